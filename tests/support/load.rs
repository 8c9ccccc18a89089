//! A small load generator: N concurrent clients, bounded by a request count
//! or a stop flag, recording every outcome.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;

#[derive(Debug, Clone)]
pub struct Outcome {
    /// Where the request went.
    pub url: String,
    /// `None` when no HTTP answer came (refused, reset, timed out).
    pub status: Option<u16>,
    /// The answer's body; without an answer, the client's error.
    pub body: String,
    pub sent: Instant,
    pub latency: Duration,
}

/// When a load stops.
#[derive(Debug, Clone)]
pub enum Until {
    /// After this many requests in all.
    Requests(usize),
    /// When the flag is set (at most `max` requests, so it always ends).
    Flag(Arc<AtomicBool>, usize),
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

/// Sends requests from `concurrency` clients, round-robin over `urls`.
pub async fn run(
    urls: &[String],
    method: Method,
    concurrency: usize,
    until: Until,
) -> Vec<Outcome> {
    let urls = urls.to_vec();
    run_picking(
        Arc::new(move |i| urls[i % urls.len()].clone()),
        method,
        concurrency,
        until,
    )
    .await
}

/// The servers a load may send to now, as a load balancer holds them: a
/// test adds a replica once it is ready and takes one out before stopping
/// it, while the load runs.
#[derive(Debug, Clone, Default)]
pub struct Live(Arc<std::sync::RwLock<Vec<String>>>);

impl Live {
    /// Adds a server by its base URL (`http://host:port`).
    pub fn add(&self, base: &str) {
        self.0.write().unwrap().push(base.to_owned());
    }

    /// Takes a server out: no request starts towards it after this returns.
    pub fn remove(&self, base: &str) {
        self.0.write().unwrap().retain(|b| b != base);
    }

    /// The `i`th request's server: round-robin over those in now.
    fn pick(&self, i: usize) -> String {
        let live = self.0.read().unwrap();
        assert!(!live.is_empty(), "no live server to send to");
        live[i % live.len()].clone()
    }
}

/// Sends requests for `path` from `concurrency` clients, each to the next
/// server in `live` at the time it starts.
pub async fn run_live(
    live: &Live,
    path: &str,
    method: Method,
    concurrency: usize,
    until: Until,
) -> Vec<Outcome> {
    let (live, path) = (live.clone(), path.to_owned());
    run_picking(
        Arc::new(move |i| format!("{}{path}", live.pick(i))),
        method,
        concurrency,
        until,
    )
    .await
}

/// The URL of the `i`th request.
type Pick = Arc<dyn Fn(usize) -> String + Send + Sync>;

async fn run_picking(pick: Pick, method: Method, concurrency: usize, until: Until) -> Vec<Outcome> {
    run_built(
        Arc::new(move |client, i| client.request(method.clone(), pick(i))),
        concurrency,
        until,
    )
    .await
}

/// The `i`th request of a load, built on the load's client: any method,
/// headers and body.
pub type Build = Arc<dyn Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync>;

/// Sends the requests `build` makes from `concurrency` clients.
pub async fn run_built(build: Build, concurrency: usize, until: Until) -> Vec<Outcome> {
    let client = client();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (client, next, build, until) =
            (client.clone(), next.clone(), build.clone(), until.clone());
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let more = match &until {
                    Until::Requests(n) => i < *n,
                    Until::Flag(stop, max) => i < *max && !stop.load(Ordering::Relaxed),
                };
                if !more {
                    return outcomes;
                }
                outcomes.push(send_built(&client, build(&client, i)).await);
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("load task"));
    }
    all
}

pub async fn send(client: &reqwest::Client, method: Method, url: &str) -> Outcome {
    let sent = Instant::now();
    let result = client.request(method, url).send().await;
    answered(url.to_owned(), sent, result).await
}

/// Sends one request made on `client`, recording its outcome (`url` as
/// the request has it).
pub async fn send_built(client: &reqwest::Client, request: reqwest::RequestBuilder) -> Outcome {
    let sent = Instant::now();
    match request.build() {
        Ok(request) => {
            let url = request.url().to_string();
            answered(url, sent, client.execute(request).await).await
        }
        Err(e) => answered(String::new(), sent, Err(e)).await,
    }
}

async fn answered(
    url: String,
    sent: Instant,
    result: reqwest::Result<reqwest::Response>,
) -> Outcome {
    let (status, body) = match result {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.text().await {
                Ok(body) => (Some(status), body),
                Err(e) => (None, format!("{e:?}")),
            }
        }
        Err(e) => (None, format!("{e:?}")),
    };
    Outcome {
        url,
        status,
        body,
        sent,
        latency: sent.elapsed(),
    }
}

/// How many outcomes had each status (`0` for no answer).
pub fn statuses(outcomes: &[Outcome]) -> BTreeMap<u16, usize> {
    let mut map = BTreeMap::new();
    for o in outcomes {
        *map.entry(o.status.unwrap_or(0)).or_insert(0) += 1;
    }
    map
}

/// The `p`th percentile (0..=100) of latencies.
pub fn percentile(outcomes: &[Outcome], p: f64) -> Duration {
    let mut l: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
    l.sort();
    if l.is_empty() {
        return Duration::ZERO;
    }
    let i = ((p / 100.0) * (l.len() - 1) as f64).round() as usize;
    l[i.min(l.len() - 1)]
}

/// Sliding-window limit tests count on not crossing a minute boundary.
pub async fn away_from_a_minute_boundary() {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if secs % 60 >= 50 {
        tokio::time::sleep(Duration::from_secs(61 - secs % 60)).await;
    }
}

pub fn count_200(outcomes: &[Outcome]) -> usize {
    outcomes.iter().filter(|o| o.status == Some(200)).count()
}

/// `counts` are exactly 1..=n: as many, none repeated, none missing.
pub fn assert_one_to_n(counts: &[i64], n: i64, what: &str) {
    let mut sorted = counts.to_vec();
    sorted.sort_unstable();
    if sorted.iter().copied().eq(1..=n) {
        return;
    }
    let repeated = sorted.windows(2).filter(|w| w[0] == w[1]).count();
    let missing = (1..=n).filter(|c| sorted.binary_search(c).is_err()).count();
    panic!(
        "{what}: {} counts answered for a count of {n}: {repeated} repeated, {missing} of 1..={n} \
         missing, lowest {:?}, highest {:?}",
        sorted.len(),
        sorted.first(),
        sorted.last()
    );
}
