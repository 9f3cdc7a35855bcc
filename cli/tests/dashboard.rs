//! The dashboard in a real browser: headless Chromium (Debian's `chromium`, driven through
//! `chromedriver`) against `pulse serve` (the binary) on a private `redis-server`, with a
//! pool, a stream (a sink, a dead letter) and a map set up through the library in this
//! process.
//!
//! Without `chromedriver` on `PATH` the test says SKIPPED and passes, unless
//! `PULSE_REQUIRE_BROWSER=1` (CI), where that is a failure. Screenshots of each page go to
//! `PULSE_SCREENSHOTS` (the committed ones: `docs/screenshots`), else to a temporary
//! directory of the build.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use pulse::{
    backend::EntryId,
    error::BoxError,
    keys::Keyspace,
    pool::{Job, JobHandler, JobStop, Node, NodeOptions},
    rmap::{Map, MapOptions},
    streaming::{SinkOptions, Start, Stream, StreamOptions},
    Backend,
};
use pulse_cli::gateway::{router, AppState, ServeOptions};
use pulse_conformance::redis_server::private_server;

const TOKEN: &str = "s3cret-token";
const PATIENCE: Duration = Duration::from_secs(20);

/// The jobs running, as the workers saw them.
#[derive(Default)]
struct Running(Mutex<BTreeMap<String, bool>>);

struct Worker(Arc<Running>);

#[pulse::async_trait]
impl JobHandler for Worker {
    async fn start(&self, job: &Job) -> Result<(), BoxError> {
        self.0 .0.lock().unwrap().insert(job.key.clone(), true);
        Ok(())
    }
    async fn on_stop(&self, stop: &JobStop) -> Result<(), BoxError> {
        self.0 .0.lock().unwrap().insert(stop.key.clone(), false);
        Ok(())
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `chromedriver` on a free port, killed on drop.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_driver() -> Option<Driver> {
    let required = std::env::var("PULSE_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let port = free_port();
    match Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => Some(Driver(child, port)),
        Err(e) if required => panic!("PULSE_REQUIRE_BROWSER=1 but chromedriver failed: {e}"),
        Err(e) => {
            eprintln!("SKIPPED: no chromedriver ({e}); apt-get install chromium chromium-driver");
            None
        }
    }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,1500", "--disable-gpu"],
        }),
    );
    let url = format!("http://127.0.0.1:{}", driver.1);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("no browser session: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Serves the gateway on a free port; its base URL.
async fn serve(
    backend: Arc<dyn Backend>,
    ks: Keyspace,
    token: Option<&str>,
    read_only: bool,
) -> String {
    let options = ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: token.map(str::to_owned),
        max_body: 1 << 20,
        ack_grace: Duration::from_secs(30),
        read_only,
    };
    let app = router(AppState::new(backend, ks, &options), options.max_body);
    let listener = tokio::net::TcpListener::bind(options.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// `pulse serve` (the binary) on `url`, killed on drop.
struct Served {
    child: Child,
    base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve_binary(url: &str, token: Option<&str>, read_only: bool) -> Served {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pulse"));
    cmd.args(["--backend", url, "--keyspace", "ui", "serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    if read_only {
        cmd.arg("--read-only");
    }
    let served = Served {
        child: cmd.spawn().unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let health = format!("{}/healthz", served.base);
    eventually("pulse serve answers", || async {
        reqwest::get(&health)
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    served
}

fn screenshots() -> PathBuf {
    let dir = std::env::var("PULSE_SCREENSHOTS").map_or_else(
        |_| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shoot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// Waits for `css` to match (the page may change under script).
async fn wait_for(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} never appeared: {e}"))
}

async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_browser() {
    let Some(redis) = private_server(&[]) else {
        return;
    };
    let Some(driver) = start_driver() else {
        return;
    };
    let backend = pulse_connect::open(&redis.url()).await.unwrap();
    let ks = Keyspace::new("ui").unwrap();

    // A pool with two workers and three jobs.
    let running = Arc::new(Running::default());
    let node = Node::join(
        backend.clone(),
        "orders",
        NodeOptions::default().with_keyspace(ks.clone()),
    )
    .await
    .unwrap();
    let a = node.add_worker(Worker(running.clone())).await.unwrap();
    let b = node.add_worker(Worker(running.clone())).await.unwrap();
    for k in ["job-1", "job-2", "job-3"] {
        node.dispatch_job(k, "payload").await.unwrap();
    }
    // A stream with a sink and a dead letter.
    let stream = Stream::new(
        backend.clone(),
        "payments",
        StreamOptions::default().with_keyspace(ks.clone()),
    )
    .unwrap();
    let sink = stream
        .new_sink(
            "billing",
            SinkOptions::default()
                .with_start(Start::Oldest)
                .with_max_deliveries(1),
        )
        .await
        .unwrap();
    let mut rx = sink.subscribe().unwrap();
    stream.add("payment.failed", "card declined").await.unwrap();
    let bad = rx.recv().await.unwrap();
    sink.fail(&bad, "no such card").await.unwrap();
    for i in 0..5 {
        stream
            .add("payment.done", format!("payment {i}"))
            .await
            .unwrap();
    }
    // A map with a text and a binary value.
    let map = Map::join(
        backend.clone(),
        "config",
        MapOptions::default().with_keyspace(ks.clone()),
    )
    .await
    .unwrap();
    map.set("mode", "fast").await.unwrap();
    map.set("blob", vec![0u8, 159, 146, 150]).await.unwrap();

    let served = serve_binary(&redis.url(), Some(TOKEN), false).await;
    let base = served.base.clone();
    let c = browser(&driver).await;

    // A wrong token is refused; the right one signs in.
    c.goto(&format!("{base}/ui")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/login"));
    let field = wait_for(&c, "#token").await;
    field.send_keys("wrong").await.unwrap();
    c.find(Locator::Css("form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let alert = wait_for(&c, "p.error").await;
    assert!(alert.text().await.unwrap().contains("wrong"));
    c.goto(&format!("{base}/ui/pools/orders")).await.unwrap();
    assert!(
        c.current_url().await.unwrap().path().ends_with("/ui/login"),
        "still refused"
    );
    wait_for(&c, "#token").await.send_keys(TOKEN).await.unwrap();
    c.find(Locator::Css("form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&c, "a[href='/ui/pools/orders']").await;
    wait_for(&c, "a[href='/ui/streams/payments']").await;

    // The pool page lists the jobs; a dispatch made now appears without a reload.
    c.goto(&format!("{base}/ui/pools/orders")).await.unwrap();
    for k in ["job-1", "job-2", "job-3"] {
        wait_for(&c, &format!("tr[data-key='{k}']")).await;
    }
    node.dispatch_job("job-live", "payload").await.unwrap();
    wait_for(&c, "tr[data-key='job-live']").await;
    wait_for(&c, "#feed li").await;
    // The worker running job-2 leaves: its jobs move, in the feed and on the chart.
    let leaving = [&a, &b]
        .into_iter()
        .find(|w| w.jobs().contains(&"job-2".to_owned()))
        .expect("job-2 runs on a or b");
    node.remove_worker(leaving).await.unwrap();
    wait_for(&c, "#moves rect").await;
    shoot(&c, "pool").await;

    // Stop from the page: the worker is told, the pool forgets the job.
    c.find(Locator::Css("button[aria-label='Stop job-1']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let note = wait_for(&c, "p.done").await;
    assert!(note.text().await.unwrap().contains("Stopped job-1"));
    eventually("job-1 stopped on its worker", || async {
        running.0.lock().unwrap().get("job-1") == Some(&false)
    })
    .await;
    eventually("job-1 gone from the pool", || async {
        node.inspect().await.unwrap().job("job-1").is_none()
    })
    .await;

    // The stream page: sinks, the dead letter; requeue it from the page.
    c.goto(&format!("{base}/ui/streams/payments"))
        .await
        .unwrap();
    wait_for(&c, "table.dead").await;
    // The live tail shows what is added now (until the page's subscription is up, an
    // add may come before it: add again).
    let deadline = Instant::now() + PATIENCE;
    while c
        .find_all(Locator::Css("#tail tbody tr"))
        .await
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the live tail stayed empty");
        stream.add("payment.done", "live one").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let row = wait_for(&c, "#tail tbody tr").await.text().await.unwrap();
    assert!(row.contains("live one"), "{row}");
    shoot(&c, "stream").await;
    let letters = stream.dead_letters("billing").unwrap();
    let dead = letters.list(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    c.find(Locator::Css(&format!(
        "button[aria-label='Requeue {}']",
        dead[0].id
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let note = wait_for(&c, "p.done").await;
    assert!(note.text().await.unwrap().contains("Requeued"));
    assert!(
        letters.list(10).await.unwrap().is_empty(),
        "requeued through the library's eyes"
    );
    let entries = backend
        .stream_range(stream.key(), EntryId::ZERO, EntryId::MAX, None)
        .await
        .unwrap();
    let declined = entries
        .iter()
        .filter(|e| e.fields.iter().any(|(_, v)| v == "card declined"))
        .count();
    assert_eq!(declined, 2, "the original and its requeued copy");

    // The map page: text and hex.
    c.goto(&format!("{base}/ui/maps/config")).await.unwrap();
    let table = wait_for(&c, "#entries").await.text().await.unwrap();
    assert!(
        table.contains("fast") && table.contains("009f9296"),
        "{table}"
    );
    // A change shows without a reload (the page's watch may start after the first set).
    let deadline = Instant::now() + PATIENCE;
    loop {
        map.set("mode", "careful").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let table = c.find(Locator::Css("#entries")).await.unwrap();
        if table.text().await.unwrap().contains("careful") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the map page never showed the change"
        );
    }
    shoot(&c, "map").await;
    // Keyboard: the first Tab reaches the skip link, which leads to the content.
    c.find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys(&fantoccini::key::Key::Tab.to_string())
        .await
        .unwrap();
    let focused = c.active_element().await.unwrap();
    assert_eq!(
        focused.attr("class").await.unwrap().as_deref(),
        Some("skip")
    );
    // Back to the overview once the sampler has two points: events/s has a line.
    let deadline = Instant::now() + PATIENCE;
    loop {
        stream.add("payment.done", "one more").await.unwrap();
        c.goto(&format!("{base}/ui")).await.unwrap();
        let lines = c
            .find_all(Locator::Css("svg.spark polyline[points*=',']"))
            .await
            .unwrap();
        if !lines.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no events/s line on the overview"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    shoot(&c, "overview").await;
    c.close().await.unwrap();

    // Read-only: no action on any page, and a change is refused.
    let read_only = serve_binary(&redis.url(), None, true).await;
    let ro = read_only.base.clone();
    let c = browser(&driver).await;
    for page in ["/ui/pools/orders", "/ui/streams/payments"] {
        c.goto(&format!("{ro}{page}")).await.unwrap();
        wait_for(&c, "h1").await;
        let forms = c
            .find_all(Locator::Css("form[method='post']"))
            .await
            .unwrap();
        assert!(forms.is_empty(), "{page} shows {} actions", forms.len());
    }
    c.close().await.unwrap();
    let http = reqwest::Client::new();
    let refused = http
        .post(format!("{ro}/ui/pools/orders/stop"))
        .form(&[("key", "job-2")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
    let api = http
        .post(format!("{ro}/v1/pools/orders/jobs"))
        .json(&serde_json::json!({"key": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), reqwest::StatusCode::FORBIDDEN);
    // A wrong bearer token is refused by the API too.
    let wrong = http
        .get(format!("{base}/v1/pools"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), reqwest::StatusCode::UNAUTHORIZED);
    node.close().await.unwrap();
    sink.close().await.unwrap();
    map.close().await.unwrap();
}

/// A newcomer's look: `pulse serve --backend memory: --demo` (the binary, as run by hand)
/// serves pages with the demo's pool, stream, dead letter and map.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_demo_on_memory_has_something_to_look_at() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(["--backend", "memory:", "serve", "--demo", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let page = |path: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http.get(format!("{base}{path}")).send().await.ok()?;
            r.status().is_success().then_some(())?;
            r.text().await.ok()
        }
    };
    eventually("the demo serves", || async { page("/ui").await.is_some() }).await;
    let overview = page("/ui").await.unwrap();
    for name in ["orders", "payments", "config"] {
        assert!(overview.contains(name), "{name} on the overview");
    }
    eventually("the demo's jobs run", || async {
        page("/ui/pools/orders")
            .await
            .is_some_and(|p| (1..=6).all(|i| p.contains(&format!("data-key=\"order-{i}\""))))
    })
    .await;
    let stream = page("/ui/streams/payments").await.unwrap();
    assert!(
        stream.contains("no such card"),
        "the dead letter and its reason"
    );
    let map = page("/ui/maps/config").await.unwrap();
    assert!(map.contains("eu-west"));
    let _ = child.kill();
    let _ = child.wait();
}

/// The sign-in cookie opens the pages and the API, but a change sent with it from another
/// site is refused; without it the pages send the browser to sign in.
#[tokio::test]
async fn the_cookie_signs_in_but_not_for_other_sites() {
    let backend = pulse_connect::open("memory:").await.unwrap();
    let base = serve(backend, Keyspace::new("ui").unwrap(), Some(TOKEN), false).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(format!("{base}/ui")).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/ui/login");
    let wrong = http
        .post(format!("{base}/ui/login"))
        .form(&[("token", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get("set-cookie").is_none());
    let right = http
        .post(format!("{base}/ui/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), reqwest::StatusCode::SEE_OTHER);
    let cookie = right.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let page = http
        .get(format!("{base}/ui"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    let api = http
        .get(format!("{base}/v1/pools"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), reqwest::StatusCode::OK);
    for url in [
        format!("{base}/v1/pools/p/jobs"),
        format!("{base}/ui/pools/p/dispatch"),
    ] {
        let forged = http
            .post(&url)
            .header("cookie", &pair)
            .header("sec-fetch-site", "cross-site")
            .form(&[("key", "k")])
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), reqwest::StatusCode::FORBIDDEN, "{url}");
    }
}
