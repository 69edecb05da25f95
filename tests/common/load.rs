//! A bounded load generator on loopback: `threads` clients, each sending
//! GETs (one fresh connection per request, so that nothing is retried
//! behind our back) until a deadline or a request cap, recording every
//! request's start, end and outcome (HTTP status or transport error).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct LoadOpts {
    pub threads: usize,
    /// Cap on requests issued (all threads together).
    pub max_requests: u64,
    /// Hard deadline from the start.
    pub duration: Duration,
    /// Per-request bound (a request that takes longer is a transport error).
    pub timeout: Duration,
    /// Pause after each request, per thread.
    pub pace: Duration,
}

impl Default for LoadOpts {
    fn default() -> Self {
        LoadOpts {
            threads: 6,
            max_requests: 1_000_000,
            duration: Duration::from_secs(60),
            timeout: Duration::from_secs(15),
            pace: Duration::from_millis(2),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Sample {
    /// Since the load's start.
    pub start: Duration,
    pub end: Duration,
    pub url: usize,
    /// HTTP status, or the transport error.
    pub outcome: Result<u16, String>,
}

impl Sample {
    pub fn ok(&self) -> bool {
        matches!(self.outcome, Ok(s) if (200..300).contains(&s))
    }
    pub fn took(&self) -> Duration {
        self.end - self.start
    }
}

pub struct Load {
    t0: Instant,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts the clients; they cycle through `urls`.
    pub fn start(urls: Vec<String>, o: LoadOpts) -> Load {
        assert!(!urls.is_empty());
        let t0 = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let issued = Arc::new(AtomicU64::new(0));
        let urls = Arc::new(urls);
        let threads = (0..o.threads)
            .map(|_| {
                let (stop, samples, issued, urls, o) =
                    (stop.clone(), samples.clone(), issued.clone(), urls.clone(), o.clone());
                std::thread::spawn(move || {
                    let c = super::client(o.timeout);
                    while !stop.load(Ordering::SeqCst) && t0.elapsed() < o.duration {
                        let n = issued.fetch_add(1, Ordering::SeqCst);
                        if n >= o.max_requests {
                            break;
                        }
                        let i = (n % urls.len() as u64) as usize;
                        let start = t0.elapsed();
                        let outcome = super::get_with(&c, &urls[i]).map(|r| r.status);
                        let end = t0.elapsed();
                        samples.lock().unwrap().push(Sample { start, end, url: i, outcome });
                        if !o.pace.is_zero() {
                            std::thread::sleep(o.pace);
                        }
                    }
                })
            })
            .collect();
        Load { t0, stop, samples, threads }
    }

    /// Time since the start (the clock of the samples).
    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Requests completed so far.
    pub fn done(&self) -> usize {
        self.samples.lock().unwrap().len()
    }

    /// Successful (2xx) requests that started at or after `t`.
    pub fn ok_since(&self, t: Duration) -> usize {
        self.samples.lock().unwrap().iter().filter(|s| s.start >= t && s.ok()).count()
    }

    /// Stops the clients (each finishes its current request) and returns
    /// every sample, sorted by start.
    pub fn stop(mut self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let mut v = std::mem::take(&mut *self.samples.lock().unwrap());
        v.sort_by_key(|s| s.start);
        Report { samples: v, elapsed: self.t0.elapsed() }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

pub struct Report {
    pub samples: Vec<Sample>,
    pub elapsed: Duration,
}

impl Report {
    pub fn total(&self) -> usize {
        self.samples.len()
    }
    pub fn failures(&self) -> Vec<&Sample> {
        self.samples.iter().filter(|s| !s.ok()).collect()
    }
    pub fn failed(&self) -> usize {
        self.samples.iter().filter(|s| !s.ok()).count()
    }
    /// Non-2xx statuses and transport errors, counted by kind.
    pub fn breakdown(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for s in self.samples.iter().filter(|s| !s.ok()) {
            let k = match &s.outcome {
                Ok(st) => format!("status {st}"),
                Err(e) => format!("error {}", e.chars().take(60).collect::<String>()),
            };
            *m.entry(k).or_insert(0) += 1;
        }
        m
    }
    /// Requests that were in flight at `t`.
    pub fn in_flight_at(&self, t: Duration) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.start <= t && s.end >= t).collect()
    }
    pub fn max_latency(&self) -> Duration {
        self.samples.iter().map(Sample::took).max().unwrap_or_default()
    }
    pub fn rate(&self) -> f64 {
        self.total() as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }
    pub fn summary(&self) -> String {
        format!(
            "{} requests in {:.1} s ({:.0}/s), {} failed {:?}, max latency {:?}",
            self.total(),
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.failed(),
            self.breakdown(),
            self.max_latency()
        )
    }
}

/// What `kill9_children_under_load` saw.
pub struct Kill9 {
    pub rounds: usize,
    pub report: Report,
    /// Requests in flight (in every child) at the kills.
    pub in_flight: usize,
    /// Failures of requests that were not in flight at any kill.
    pub late: Vec<Sample>,
    /// Per kill: time until a new child had idle links for `node`.
    pub redials: Vec<Duration>,
}

impl Kill9 {
    /// The figure line both scenarios print.
    pub fn describe(&self, what: &str) -> String {
        format!(
            "{} kill -9 of a child under load{what}: {} failed of {} ({:?}); {} requests in flight at the kills (all children); {} failures not in flight at a kill; replacement child has idle links after {:?}",
            self.rounds,
            self.report.failed(),
            self.report.total(),
            self.report.breakdown(),
            self.in_flight,
            self.late.len(),
            self.redials.iter().map(|d| format!("{:.2} s", d.as_secs_f64())).collect::<Vec<_>>()
        )
    }
}

/// Runs a bounded load on `urls` and `rounds` times kills the oldest child of
/// `h` with SIGKILL, each time waiting (20 s at most) for a replacement child
/// that has idle links for `node`.
pub fn kill9_children_under_load(h: &super::Httpd, node: &str, urls: Vec<String>, rounds: usize) -> Kill9 {
    let load = Load::start(urls, LoadOpts { threads: 8, duration: Duration::from_secs(60), ..Default::default() });
    std::thread::sleep(Duration::from_secs(2));
    let mut kills = Vec::new();
    let mut redials = Vec::new();
    for _ in 0..rounds {
        let st = super::status_json(h).unwrap();
        let victim = st.pids()[0] as i32;
        let before = st.pids();
        kills.push(load.now());
        // SAFETY: a plain kill(2) of a child process of the httpd this test started.
        unsafe {
            libc::kill(victim, libc::SIGKILL);
        }
        let t0 = Instant::now();
        let mut last = Err(String::new());
        let ok = super::wait_until(Duration::from_secs(20), || {
            last = super::status_json(h);
            matches!(&last, Ok(s) if s.pids().iter().any(|p| !before.contains(p))
                && !s.pids().contains(&(victim as i64))
                && s.all_children_idle(&[node]))
        });
        assert!(ok, "no replacement child with idle links within 20 s: {last:?}");
        redials.push(t0.elapsed());
        std::thread::sleep(Duration::from_secs(2));
    }
    let report = load.stop();
    let in_flight: usize = kills.iter().map(|t| report.in_flight_at(*t).len()).sum();
    let late: Vec<Sample> = report
        .failures()
        .into_iter()
        .filter(|s| !kills.iter().any(|k| s.start <= *k + Duration::from_millis(20) && s.end >= *k))
        .cloned()
        .collect();
    Kill9 { rounds, report, in_flight, late, redials }
}

/// Restarts `h` gracefully `rounds` times (apache2 -k graceful, else
/// SIGUSR1), each time waiting (30 s at most) until a whole new generation of
/// children has idle links for `node`, then letting it serve 700 ms.
/// Returns the time each new generation took, and how many restarts went
/// through `apache2 -k graceful`.
pub fn graceful_rounds(h: &super::Httpd, node: &str, rounds: usize) -> (Vec<Duration>, usize) {
    let mut took = Vec::new();
    let mut via_k = 0;
    for round in 0..rounds {
        let old = super::status_json(h).unwrap().pids();
        let t = Instant::now();
        via_k += h.graceful_k() as usize;
        let mut last = Err(String::new());
        let ok = super::wait_until(Duration::from_secs(30), || {
            last = super::status_json(h);
            matches!(&last, Ok(s) if !s.children.is_empty()
                && s.pids().iter().all(|p| !old.contains(p))
                && s.all_children_idle(&[node]))
        });
        assert!(ok, "{} round {round}: no new generation with idle links within 30 s: {last:?}", h.mpm().name());
        took.push(t.elapsed());
        // Let the new generation serve for a while before the next restart.
        std::thread::sleep(Duration::from_millis(700));
    }
    (took, via_k)
}

/// `graceful_rounds` while a load (`urls`, `o`) runs, with `settle` of load
/// before the first restart and after the last: the load's report, and what
/// `graceful_rounds` returns.
pub fn graceful_rounds_under_load(
    h: &super::Httpd,
    node: &str,
    rounds: usize,
    urls: Vec<String>,
    o: LoadOpts,
    settle: Duration,
) -> (Report, Vec<Duration>, usize) {
    let load = Load::start(urls, o);
    std::thread::sleep(settle);
    let (took, via_k) = graceful_rounds(h, node, rounds);
    std::thread::sleep(settle);
    (load.stop(), took, via_k)
}
