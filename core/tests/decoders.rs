#![allow(clippy::unwrap_used)]

//! Every decoder of data that comes from outside the process (the backend, peers, foreign
//! writers) returns a typed error on arbitrary bytes — never a panic — and round-trips
//! what the encoders produce.

use bytes::Bytes;
use proptest::prelude::*;
use pulse::{
    backend::{EntryId, StreamEntry},
    codec::{self, MapChange, MapNotice},
    streaming::Event,
    Error,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn map_notices_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        match MapNotice::decode(&bytes) {
            Ok(n) => prop_assert_eq!(MapNotice::decode(&n.encode().unwrap()).unwrap(), n),
            Err(e) => prop_assert!(matches!(e, Error::Malformed { .. }), "expected Malformed, got {:?}", e),
        }
    }

    #[test]
    fn fixed_width_notices_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..48)) {
        let frame: Vec<u8> = std::iter::once(codec::NOTICE_VERSION).chain(tail).collect();
        match MapNotice::decode(&frame) {
            // Re-encoding may pick a different layout (a batch of one becomes a plain set).
            Ok(n) => prop_assert_eq!(MapNotice::decode(&n.encode().unwrap()).unwrap(), n),
            Err(e) => prop_assert!(matches!(e, Error::Malformed { .. }), "expected Malformed, got {:?}", e),
        }
    }

    #[test]
    fn batch_frames_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..48)) {
        let mut frame = vec![codec::NOTICE_VERSION];
        frame.extend_from_slice(&1u64.to_le_bytes());
        frame.extend_from_slice(&1u64.to_le_bytes());
        frame.push(4);
        frame.extend(tail);
        match MapNotice::decode_all(&frame) {
            Ok(all) => prop_assert!(!all.is_empty()),
            Err(e) => prop_assert!(matches!(e, Error::Malformed { .. }), "expected Malformed, got {:?}", e),
        }
    }

    #[test]
    fn batches_round_trip(sets in proptest::collection::vec((".{1,6}", proptest::collection::vec(any::<u8>(), 0..6)), 1..6)) {
        let pairs: Vec<(&str, &[u8])> = sets.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        let all = MapNotice::decode_all(&MapNotice::encode_sets(3, 10, &pairs).unwrap()).unwrap();
        prop_assert_eq!(all.len(), sets.len());
        for (i, (n, (k, v))) in all.iter().zip(&sets).enumerate() {
            prop_assert_eq!(n.rev, 10 + i as u64);
            prop_assert_eq!(&n.change, &MapChange::Set { key: k.clone(), value: Bytes::from(v.clone()) });
        }
    }

    #[test]
    fn truncated_notices_are_malformed(key in ".{1,8}", value in proptest::collection::vec(any::<u8>(), 0..8)) {
        let frame = MapNotice { epoch: 9, rev: 4, change: MapChange::Set { key, value: Bytes::from(value) } }
            .encode()
            .unwrap();
        for cut in 0..frame.len() {
            let e = MapNotice::decode(&frame[..cut]).unwrap_err();
            prop_assert!(matches!(e, Error::Malformed { .. }), "expected Malformed, got {:?}", e);
        }
    }

    #[test]
    fn lists_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        match codec::decode_list(&bytes) {
            Ok(items) => prop_assert_eq!(codec::encode_list(&items), bytes),
            Err(e) => prop_assert!(matches!(e, Error::Malformed { .. }), "expected Malformed, got {:?}", e),
        }
    }

    #[test]
    fn typed_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let r: Result<(String, u64, Vec<u8>), Error> = codec::decode("test", &bytes);
        if let Err(e) = r {
            prop_assert!(matches!(e, Error::Malformed { .. }), "expected Malformed, got {:?}", e);
        }
    }

    #[test]
    fn entry_ids_never_panic(text in ".{0,40}") {
        match text.parse::<EntryId>() {
            Ok(id) => prop_assert_eq!(id.to_string().parse::<EntryId>().unwrap(), id),
            Err(e) => prop_assert!(matches!(e, Error::Malformed { .. }), "expected Malformed, got {:?}", e),
        }
    }

    #[test]
    fn stream_entries_become_events_or_errors(
        fields in proptest::collection::vec((".{0,3}", proptest::collection::vec(any::<u8>(), 0..8)), 0..5)
    ) {
        let entry = StreamEntry {
            id: EntryId::new(1, 1),
            fields: fields.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect(),
        };
        if let Err(e) = Event::from_entry("s", None, entry) {
            prop_assert!(matches!(e, Error::Malformed { .. }), "expected Malformed, got {:?}", e);
        }
    }

    #[test]
    fn notices_round_trip(epoch in 1u64..(1 << 53), rev in any::<u64>(), key in ".{1,20}", value in proptest::collection::vec(any::<u8>(), 0..32)) {
        for change in [MapChange::Set { key: key.clone(), value: Bytes::from(value.clone()) }, MapChange::Delete { key: key.clone() }, MapChange::Reset, MapChange::Destroy] {
            let n = MapNotice { epoch, rev, change };
            prop_assert_eq!(MapNotice::decode(&n.encode().unwrap()).unwrap(), n);
        }
    }
}
