//! # pulse-conformance
//!
//! The one behavioural suite every Pulse backend must pass. A backend crate runs all of it
//! with a single macro call in an integration test:
//!
//! ```text
//! use std::sync::Arc;
//! use pulse_conformance::{conformance_suite, Fixture};
//!
//! async fn fixture() -> Option<Fixture> {
//!     let backend = my_store::MyBackend::connect("…").await.ok()?;
//!     Some(Fixture::new(Arc::new(backend.clone()), Arc::new(MyFaults(backend))))
//! }
//!
//! conformance_suite!(fixture);
//! ```
//!
//! The macro expands to one `#[test]` per case, generated from the single list in
//! [`conformance_suite!`], so a new case reaches every backend at once. Each case:
//! - runs on its own multi-threaded tokio runtime within a time limit (60 s by default,
//!   [`Fixture::with_case_timeout`]), and waits for anything "eventually" true up to a
//!   patience (10 s by default, [`Fixture::with_patience`]): a backend whose calls take
//!   15 ms raises both instead of failing cases that are only slow;
//! - gets a fresh random namespace ([`Ctx::key`]) so cases run in parallel on one server
//!   and nothing is ever flushed;
//! - is skipped (with a visible `SKIPPED` line) when the fixture returns `None`, which
//!   [`redis_server::shared_url`] does when no `redis-server` is available — unless
//!   `PULSE_REQUIRE_REDIS=1`, where that is a failure.
//!
//! Cases assert error *variants*, never message text.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod captured_metrics;
pub mod cases;
pub mod flaky;
pub mod job_audit;
pub mod redis_cluster;
pub mod redis_server;
mod util;

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use pulse::Backend;

pub use util::{eventually, expect_event, patience, Ctx};

/// A boxed future, for the [`Faults`] trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Fault injection a backend's test fixture provides, so the suite can check what each
/// capability promises when things break.
pub trait Faults: Send + Sync {
    /// Breaks the backend's pub/sub connection the way a network failure would (the Redis
    /// fixture kills it server-side with `CLIENT KILL`). The backend must then report
    /// `Lost` and, once recovered, `Restored` to every subscription.
    fn kill_subscriptions(&self) -> BoxFuture<'_, ()>;
}

/// What a case runs against.
#[derive(Clone)]
pub struct Fixture {
    /// The backend under test.
    pub backend: Arc<dyn Backend>,
    /// Its fault injection.
    pub faults: Arc<dyn Faults>,
    /// Longest a single case may run. Default [`CASE_TIMEOUT`].
    pub case_timeout: Duration,
    /// Longest [`eventually`] and the cases' other bounded waits wait for something that
    /// must happen. Default [`PATIENCE`].
    pub patience: Duration,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("backend", &self.backend.kind())
            .field("case_timeout", &self.case_timeout)
            .field("patience", &self.patience)
            .finish_non_exhaustive()
    }
}

impl Fixture {
    /// A fixture from a backend and its fault injection.
    pub fn new(backend: Arc<dyn Backend>, faults: Arc<dyn Faults>) -> Self {
        Fixture {
            backend,
            faults,
            case_timeout: CASE_TIMEOUT,
            patience: PATIENCE,
        }
    }

    /// Sets [`Fixture::case_timeout`].
    pub fn with_case_timeout(mut self, d: Duration) -> Self {
        self.case_timeout = d;
        self
    }

    /// Sets [`Fixture::patience`].
    pub fn with_patience(mut self, d: Duration) -> Self {
        self.patience = d;
        self
    }
}

/// Default longest a single case may run.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default longest wait for something that must eventually happen.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Runs one case: builds a runtime, asks `fixture` for a backend (skipping visibly when it
/// returns `None`), and runs `case` with a fresh namespace under the fixture's case
/// timeout, with its patience in force for [`eventually`].
pub fn run<F, FFut, C, CFut>(name: &str, fixture: F, case: C)
where
    F: FnOnce() -> FFut,
    FFut: Future<Output = Option<Fixture>>,
    C: FnOnce(Ctx) -> CFut,
    CFut: Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let Some(fx) = fixture().await else {
            eprintln!("SKIPPED {name}: the fixture has no backend (see messages above)");
            return;
        };
        let (limit, patience) = (fx.case_timeout, fx.patience);
        let cx = Ctx::new(name, fx);
        let case = util::with_patience(patience, case(cx));
        if tokio::time::timeout(limit, case).await.is_err() {
            panic!("case {name} did not finish within {limit:?}");
        }
    });
}

/// Expands to one `#[test]` per conformance case, each calling `$fixture` (an
/// `async fn() -> Option<Fixture>`) for its backend. This list is the single source of
/// the suite's cases.
#[macro_export]
macro_rules! conformance_suite {
    ($fixture:path) => {
        $crate::__conformance_cases!($fixture;
            // keys and hashes
            key_exists_and_delete,
            expire_absolute_keeps_first_deadline,
            expire_sliding_extends,
            expired_keys_vanish,
            hash_reads,
            hash_wrong_type,
            keys_matching_lists_sorted_and_limited,
            // streams
            stream_add_and_range,
            stream_add_without_create,
            stream_add_trims,
            stream_add_ttl_absolute,
            stream_add_ttl_sliding,
            stream_add_batch,
            stream_add_with_an_explicit_id,
            stream_info_tracks_last_id,
            stream_remove,
            stream_wrong_type,
            stream_add_rejects_empty_entry,
            stream_ids_carry_wall_clock_time,
            read_after_cursor,
            read_blocks_until_data,
            read_times_out_empty,
            read_many_streams,
            read_cancel_is_prompt,
            read_invalid_arguments,
            concurrent_reads_each_get_their_own,
            read_joins_a_blocked_read_promptly,
            read_of_a_bad_key_fails_only_that_read,
            every_close_is_async_idempotent_and_final,
            // consumer groups
            group_create_positions,
            group_create_existing,
            group_create_missing_stream,
            group_read_shares_entries,
            group_read_blocks,
            group_read_no_group,
            group_read_unblocked_by_stream_delete,
            group_read_no_ack,
            group_ack,
            group_claim_idle,
            group_claim_reports_deleted,
            group_claim_specific,
            group_set_idle_and_dead_letter,
            stream_move_is_atomic_and_once,
            stream_add_once_dedups_within_its_window,
            delayed_events_are_released_when_due_in_due_order,
            delayed_events_can_be_cancelled,
            group_pending,
            group_consumers_lifecycle,
            group_list_reports_each_group,
            stream_state_shows_sinks_and_lag,
            group_destroy,
            group_ops_on_missing_stream,
            // pub/sub
            pubsub_delivers_in_order,
            pubsub_only_subscribed_channels,
            pubsub_shared_channel,
            pubsub_drop_unsubscribes,
            pubsub_reports_loss_and_restore,
            pubsub_invalid_arguments,
            // atomic map operations
            map_set_returns_previous,
            map_set_if_absent,
            map_set_if_equal,
            map_empty_value_is_not_absent,
            map_revision_and_epoch,
            map_notices_in_commit_order,
            map_set_many_in_order,
            map_no_notice_without_change,
            map_delete_conditional,
            map_increment,
            map_increment_invalid,
            map_list_append_and_unique,
            map_list_remove,
            map_list_invalid_value,
            map_list_result_size_is_bounded,
            map_big_values_leave_the_notice,
            hash_scan_visits_every_field,
            hash_scan_under_writes,
            map_reset_leaves_tombstone,
            map_test_and_reset,
            map_invalid_keys,
            map_ttl_absolute_in_operation,
            map_ttl_sliding_in_operation,
            map_new_epoch_after_hash_vanishes,
            map_concurrent_test_and_set_one_winner,
            map_concurrent_increments,
            map_wrong_type,
            // leases
            lease_exclusive,
            lease_expires,
            lease_renewed_by_holder,
            // replicated maps
            rmap_set_then_visible,
            rmap_big_values_replicate,
            rmap_join_while_written_is_consistent,
            rmap_delete_and_reset,
            rmap_set_and_wait,
            rmap_closed_map,
            rmap_empty_value,
            rmap_conditional_writes,
            rmap_lists,
            rmap_increment,
            rmap_test_and_reset,
            rmap_invalid_names_and_keys,
            rmap_typed_values,
            rmap_destroy_then_set,
            rmap_ignores_malformed_notices,
            rmap_events_say_what_changed,
            rmap_gap_triggers_resync,
            rmap_resync_after_subscription_loss,
            rmap_follows_a_recreated_map,
            rmap_learns_expiry,
            rmap_ttl_modes,
            rmap_replicas_converge,
            rmap_concurrent_test_and_set,
            rmap_concurrent_sets_each_apply_once,
            rmap_drop_releases_the_subscription,
            rmap_under_call_faults,
            rmap_close_during_a_resync_returns,
            // event streaming
            streaming_add_remove_destroy,
            streaming_ttl_and_trim,
            streaming_skips_malformed_entries,
            streaming_event_metadata,
            reader_receives_events,
            events_keep_a_given_trace_parent,
            readers_and_sinks_filter_by_subject,
            reader_start_positions,
            start_after_a_position_the_stream_lacks_is_refused,
            events_carry_their_headers,
            streams_add_idempotently_with_a_dedup_key,
            reader_subscribers_and_filters,
            reader_add_and_remove_streams,
            reader_close_is_prompt,
            sink_reads_and_acks,
            sink_instances_share_events,
            sink_redelivers_unacked_events,
            sink_events_carry_their_delivery_count,
            sink_pending_lists_unacknowledged_events,
            sink_keeps_a_read_in_flight_when_its_streams_change,
            sink_dead_letters_an_event_past_max_deliveries,
            delayed_events_appear_when_due_in_due_order,
            delayed_events_refuse_bad_input_and_can_be_cancelled,
            delayed_events_move_once_across_movers_and_lost_replies,
            delayed_events_survive_a_lost_notice,
            rpc_request_gets_its_reply,
            rpc_errors_are_typed,
            rpc_deadlines_bound_every_wait,
            rpc_heartbeats_show_a_live_responder_and_their_loss_a_dead_one,
            rpc_late_answers_are_never_misdelivered,
            rpc_many_requests_in_flight_each_get_their_own_answer,
            rpc_confirmed_adds_count_distinct_sinks,
            rpc_cancellation_reaches_the_responder,
            rpc_a_handler_that_dies_is_noticed,
            sink_nack_and_fail,
            sink_redelivery_backs_off,
            sink_policy_options_are_checked,
            sink_close_hands_over_pending_events,
            sink_close_releases_the_reclaim_lease,
            sink_crash_redelivers_to_another,
            sink_filter_acks_filtered_events,
            sink_three_instances_share_10k_events,
            sinks_and_readers_each_see_all,
            sink_add_and_remove_streams,
            sink_recovers_from_a_deleted_stream,
            sink_close,
            sink_no_ack,
            sink_slow_subscriber_stays_alive,
            streaming_under_call_faults,
            readers_and_sinks_report_failing_reads,
            // keyed worker pool
            pool_lists_workers,
            pool_dispatch_starts_the_job,
            pool_job_keys_and_topics_have_their_own_rules,
            pool_payload_limit_is_max_payload,
            pool_singleton_admission,
            pool_stop_job,
            pool_job_lease_follows_the_run,
            pool_start_failure,
            pool_notify_worker,
            pool_job_call_answers_from_the_running_worker,
            pool_job_call_unsupported_and_unplaced,
            pool_job_calls_during_moves_reach_one_owner,
            pool_jobs_survive_a_lost_state,
            pool_jobs_survive_a_lost_state_under_call_faults,
            pool_groups_route_by_range_and_move_only_their_jobs,
            pool_group_without_workers_holds_its_jobs,
            pool_group_ranges_refuse_bad_input,
            pool_inspection_shows_jobs_workers_and_waits,
            pool_events_and_stop_reasons,
            pool_remove_worker_moves_jobs,
            pool_close_moves_jobs,
            pool_crash_recovers_jobs,
            pool_rebalance_on_join,
            pool_dispatch_is_bounded,
            pool_client_only_node,
            pool_shutdown,
            pool_churn,
            pool_close_leaks_nothing,
            pool_inbox_keeps_only_unread_messages,
            pool_paused_node_fences_itself,
            pool_ticker_ticks_once_per_slot,
            pool_scheduler_applies_plans,
            // keyed worker pool under failed calls
            pool_handoff_survives_a_failed_release,
            pool_take_with_a_lost_reply_moves_on,
            pool_stop_survives_a_failed_record_delete,
            pool_failed_add_worker_leaves_no_ghost,
            pool_dispatch_survives_a_lost_start_message,
            pool_close_releases_what_started_during_close,
            pool_client_only_node_keeps_its_inbox,
            pool_remove_worker_moves_every_job_promptly,
            pool_dispatch_retry_recognises_its_own_admission,
            pool_a_failed_renewal_does_not_stop_jobs,
            pool_under_call_faults,
            pool_ticker_survives_failed_lease_calls,
            pool_close_survives_a_failed_inbox_delete,
            pool_shutdown_clears_a_crashed_owner,
            pool_stale_record_of_a_removed_worker_is_cleaned,
            // isolation
            prefixes_isolate_applications,
            keyspace_lists_maps_streams_and_pools,
            // bad input and foreign data
            bad_input_is_typed_and_writes_nothing,
            pool_survives_foreign_data,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($fixture:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::run(stringify!($case), $fixture, $crate::cases::$case);
            }
        )*
    };
}
