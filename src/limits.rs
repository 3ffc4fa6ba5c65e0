//! Rate limits, concurrency caps and call quotas: how much a client, or everyone on a
//! backend, may call.
//!
//! [`Bucket`], [`Quota`] and [`Concurrency`] are pure state machines: they take `now` as
//! an argument, do no I/O, and use `crate::sync` so `tests/loom_buckets.rs` can
//! model-check them. [`Limits`] is the router's set of them, compiled once per config.
//!
//! A limited call is refused at once, never queued: waiting would only move the overload
//! into the caller's deadline. Everything here is per process.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::Config;
use crate::config::policy::Rate;
use crate::sync::{AtomicUsize, Mutex, Ordering};

/// A token bucket: `rate` tokens a second, at most `burst` saved up. Starts full.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    state: Mutex<Level>,
}

#[derive(Debug)]
struct Level {
    tokens: f64,
    /// The instant `tokens` was last brought up to date.
    at: Instant,
}

impl Bucket {
    /// A full bucket. `rate` must be positive (the config validator sees to it).
    pub fn new(rate: f64, burst: u64, now: Instant) -> Bucket {
        let burst = burst.max(1) as f64;
        Bucket { rate, burst, state: Mutex::new(Level { tokens: burst, at: now }) }
    }

    fn refill(&self, l: &mut Level, now: Instant) {
        // Callers on several threads read the clock before taking the lock, so `now` may
        // be a little older than `at`: then nothing is refilled and `at` stays, or the same
        // interval would be counted twice.
        if now > l.at {
            l.tokens = (l.tokens + now.duration_since(l.at).as_secs_f64() * self.rate).min(self.burst);
            l.at = now;
        }
    }

    /// Takes one token, or says how long until one is there.
    pub fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let mut l = self.state.lock();
        self.refill(&mut l, now);
        if l.tokens >= 1.0 {
            l.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64(((1.0 - l.tokens) / self.rate).min(1e9)))
    }

    /// Gives back a token taken for a call that another limit then refused.
    pub fn refund(&self) {
        let mut l = self.state.lock();
        l.tokens = (l.tokens + 1.0).min(self.burst);
    }

    /// Tokens available at `now` (for status).
    pub fn level(&self, now: Instant) -> f64 {
        let mut l = self.state.lock();
        self.refill(&mut l, now);
        l.tokens
    }

    /// The refill rate, per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The most tokens it holds.
    pub fn burst(&self) -> f64 {
        self.burst
    }
}

/// At most `calls` per fixed window of `window`, windows counted from `start`.
#[derive(Debug)]
pub struct Quota {
    calls: u64,
    window: Duration,
    /// Start of the current window, calls taken in it.
    state: Mutex<(Instant, u64)>,
}

impl Quota {
    /// A fresh quota whose first window starts at `start`.
    pub fn new(calls: u64, window: Duration, start: Instant) -> Quota {
        Quota { calls, window: window.max(Duration::from_millis(1)), state: Mutex::new((start, 0)) }
    }

    fn roll(&self, s: &mut (Instant, u64), now: Instant) {
        let since = now.saturating_duration_since(s.0);
        if since >= self.window {
            let windows = (since.as_nanos() / self.window.as_nanos()) as u32;
            s.0 += self.window * windows;
            s.1 = 0;
        }
    }

    /// Counts one call, or says how long until the window ends.
    pub fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let mut s = self.state.lock();
        self.roll(&mut s, now);
        if s.1 < self.calls {
            s.1 += 1;
            return Ok(());
        }
        Err((s.0 + self.window).saturating_duration_since(now))
    }

    /// Uncounts a call that another limit then refused.
    pub fn refund(&self) {
        let mut s = self.state.lock();
        s.1 = s.1.saturating_sub(1);
    }

    /// (calls used in the current window, calls allowed, time left in it).
    pub fn usage(&self, now: Instant) -> (u64, u64, Duration) {
        let mut s = self.state.lock();
        self.roll(&mut s, now);
        (s.1, self.calls, (s.0 + self.window).saturating_duration_since(now))
    }
}

/// At most `cap` calls in flight at once.
#[derive(Debug)]
pub struct Concurrency {
    cap: usize,
    in_flight: AtomicUsize,
}

/// One call's place under a [`Concurrency`] cap, given back when dropped.
#[derive(Debug)]
pub struct Slot<'a>(&'a Concurrency);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Concurrency {
    /// A cap of `cap` (at least 1).
    pub fn new(cap: usize) -> Concurrency {
        Concurrency { cap: cap.max(1), in_flight: AtomicUsize::new(0) }
    }

    /// A place, if one is free.
    pub fn try_enter(&self) -> Option<Slot<'_>> {
        let mut cur = self.in_flight.load(Ordering::Acquire);
        loop {
            if cur >= self.cap {
                return None;
            }
            match self.in_flight.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(Slot(self)),
                Err(now) => cur = now,
            }
        }
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The cap.
    pub fn cap(&self) -> usize {
        self.cap
    }
}

/// Which limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// The client's concurrency cap.
    Concurrency,
    /// The client's own bucket.
    Client,
    /// The client's bucket on this backend.
    ClientBackend,
    /// The backend's bucket, shared by every client.
    Backend,
    /// The client's quota for the window.
    Quota,
}

impl LimitKind {
    /// Every kind, in the order they are checked (and rendered).
    pub const ALL: [LimitKind; 5] =
        [LimitKind::Concurrency, LimitKind::Client, LimitKind::ClientBackend, LimitKind::Backend, LimitKind::Quota];

    /// The `limit` label value and the name in error data.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Concurrency => "concurrency",
            LimitKind::Client => "client_rate",
            LimitKind::ClientBackend => "client_backend_rate",
            LimitKind::Backend => "backend_rate",
            LimitKind::Quota => "quota",
        }
    }
}

/// A refusal: which limit, and when trying again may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The limit that refused.
    pub kind: LimitKind,
    /// How long until it would admit a call (a concurrency cap cannot know: 1 s).
    pub retry_after: Duration,
}

#[derive(Debug, Default)]
struct ClientLimits {
    bucket: Option<Bucket>,
    quota: Option<Quota>,
    concurrency: Option<Concurrency>,
}

/// What an admitted call holds until it ends: its concurrency slot.
#[derive(Debug)]
pub struct Permit<'a> {
    _slot: Option<Slot<'a>>,
}

/// Every limit of one router. Indices: clients as configured, owners (backends and pools)
/// as the core orders them.
#[derive(Debug)]
pub struct Limits {
    backends: Vec<Option<Bucket>>,
    clients: Vec<ClientLimits>,
    pairs: HashMap<(usize, usize), Bucket>,
    client_names: Vec<String>,
    owner_names: Vec<String>,
    /// Whether any limit is configured: without one, `admit` returns at once.
    any: bool,
    /// Refusals, `[client slot][owner][kind]`: clients as configured plus one for callers
    /// that are no configured client. Plain std atomics: counts are not state under test.
    hits: Vec<std::sync::atomic::AtomicU64>,
}

fn bucket(r: Rate, now: Instant) -> Bucket {
    Bucket::new(r.rate, r.burst(), now)
}

impl Limits {
    /// Compiles `config.limits`; `owner_names` are the owners' names in the core's order.
    pub fn new(config: &Config, owner_names: &[String], now: Instant) -> Limits {
        let l = &config.limits;
        let client_ix = |n: &str| config.clients.iter().position(|c| c.name == n);
        let owner_ix = |n: &str| owner_names.iter().position(|o| o == n);
        let mut backends: Vec<Option<Bucket>> = owner_names.iter().map(|_| None).collect();
        for b in &l.backends {
            if let Some(slot) = owner_ix(&b.backend).and_then(|o| backends.get_mut(o)) {
                *slot = Some(bucket(b.bucket(), now));
            }
        }
        let mut clients: Vec<ClientLimits> = config.clients.iter().map(|_| ClientLimits::default()).collect();
        for c in &l.clients {
            if let Some(slot) = client_ix(&c.client).and_then(|i| clients.get_mut(i)) {
                slot.bucket = c.bucket().map(|r| bucket(r, now));
                slot.quota = c.quota.map(|q| Quota::new(q.calls, Duration::from_millis(q.window_ms), now));
                slot.concurrency = c.concurrency.map(|n| Concurrency::new(n as usize));
            }
        }
        let mut pairs = HashMap::new();
        for p in &l.client_backends {
            if let (Some(c), Some(o)) = (client_ix(&p.client), owner_ix(&p.backend)) {
                pairs.insert((c, o), bucket(p.bucket(), now));
            }
        }
        let any = !l.backends.is_empty() || !l.clients.is_empty() || !pairs.is_empty();
        let slots = (config.clients.len() + 1) * owner_names.len() * LimitKind::ALL.len();
        Limits {
            hits: (0..slots).map(|_| std::sync::atomic::AtomicU64::new(0)).collect(),
            backends,
            clients,
            pairs,
            client_names: config.clients.iter().map(|c| c.name.clone()).collect(),
            owner_names: owner_names.to_vec(),
            any,
        }
    }

    /// Admits one call by `client` (a configured client's index, or none) to `owner`, or
    /// says which limit refused it. Tokens and quota taken before a later limit refuses
    /// are given back, so a refused call costs nothing. The quota is counted last: only a
    /// call that goes out uses it.
    pub fn admit(&self, client: Option<usize>, owner: usize, now: Instant) -> Result<Permit<'_>, Limited> {
        if !self.any {
            return Ok(Permit { _slot: None });
        }
        self.check(client, owner, now).inspect_err(|e| {
            let c = client.filter(|c| *c < self.client_names.len()).unwrap_or(self.client_names.len());
            let k = LimitKind::ALL.iter().position(|k| *k == e.kind).unwrap_or(0);
            let i = (c * self.owner_names.len() + owner) * LimitKind::ALL.len() + k;
            if let Some(n) = self.hits.get(i).filter(|_| owner < self.owner_names.len()) {
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    }

    /// Refusals so far, as (client or none, owner, kind, count), the non-zero ones only.
    pub fn hit_counts(&self) -> Vec<(Option<usize>, usize, LimitKind, u64)> {
        let (owners, kinds) = (self.owner_names.len().max(1), LimitKind::ALL.len());
        self.hits
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let n = n.load(std::sync::atomic::Ordering::Relaxed);
                let c = i / (owners * kinds);
                let client = (c < self.client_names.len()).then_some(c);
                (n > 0).then(|| (client, (i / kinds) % owners, LimitKind::ALL[i % kinds], n))
            })
            .collect()
    }

    fn check(&self, client: Option<usize>, owner: usize, now: Instant) -> Result<Permit<'_>, Limited> {
        let refused = |kind, retry_after| Limited { kind, retry_after };
        let cl = client.and_then(|c| self.clients.get(c));
        let slot = match cl.and_then(|c| c.concurrency.as_ref()) {
            Some(cap) => Some(cap.try_enter().ok_or(refused(LimitKind::Concurrency, Duration::from_secs(1)))?),
            None => None,
        };
        let steps: [(LimitKind, Option<&Bucket>); 3] = [
            (LimitKind::Client, cl.and_then(|c| c.bucket.as_ref())),
            (LimitKind::ClientBackend, client.and_then(|c| self.pairs.get(&(c, owner)))),
            (LimitKind::Backend, self.backends.get(owner).and_then(Option::as_ref)),
        ];
        let mut taken: [Option<&Bucket>; 3] = [None; 3];
        for (i, (kind, b)) in steps.into_iter().enumerate() {
            let Some(b) = b else { continue };
            if let Err(wait) = b.try_take(now) {
                taken.iter().flatten().for_each(|b| b.refund());
                return Err(refused(kind, wait));
            }
            taken[i] = Some(b);
        }
        if let Some(q) = cl.and_then(|c| c.quota.as_ref())
            && let Err(wait) = q.try_take(now)
        {
            taken.iter().flatten().for_each(|b| b.refund());
            return Err(refused(LimitKind::Quota, wait));
        }
        Ok(Permit { _slot: slot })
    }

    /// Every configured limit and its level now, for `Router::status`.
    pub fn status(&self, now: Instant) -> Value {
        let level = |b: &Bucket| json!({"tokens": b.level(now), "burst": b.burst(), "rate": b.rate()});
        let backends: Vec<Value> = self
            .backends
            .iter()
            .zip(&self.owner_names)
            .filter_map(|(b, name)| b.as_ref().map(|b| json!({"backend": name, "bucket": level(b)})))
            .collect();
        let clients: Vec<Value> = self
            .clients
            .iter()
            .zip(&self.client_names)
            .filter(|(c, _)| c.bucket.is_some() || c.quota.is_some() || c.concurrency.is_some())
            .map(|(c, name)| {
                json!({
                    "client": name,
                    "bucket": c.bucket.as_ref().map(level),
                    "in_flight": c.concurrency.as_ref().map(Concurrency::in_flight),
                    "concurrency": c.concurrency.as_ref().map(Concurrency::cap),
                    "quota": c.quota.as_ref().map(|q| {
                        let (used, calls, left) = q.usage(now);
                        json!({"used": used, "calls": calls, "window_left_ms": left.as_millis() as u64})
                    }),
                })
            })
            .collect();
        let mut pairs: Vec<(&(usize, usize), &Bucket)> = self.pairs.iter().collect();
        pairs.sort_by_key(|(k, _)| **k);
        let pairs: Vec<Value> = pairs
            .into_iter()
            .map(|((c, o), b)| {
                json!({"client": self.client_names.get(*c), "backend": self.owner_names.get(*o), "bucket": level(b)})
            })
            .collect();
        json!({"backends": backends, "clients": clients, "client_backends": pairs})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    #[test]
    fn a_burst_over_the_limit_is_refused_and_recovers_at_the_rate() {
        let clock = ManualClock::new();
        let b = Bucket::new(2.0, 3, clock.now());
        let taken = (0..10).filter(|_| b.try_take(clock.now()).is_ok()).count();
        assert_eq!(taken, 3, "the burst, no more");
        let wait = b.try_take(clock.now()).expect_err("empty");
        assert_eq!(wait, Duration::from_millis(500), "one token at 2/s");
        clock.advance(Duration::from_millis(499));
        assert!(b.try_take(clock.now()).is_err());
        clock.advance(Duration::from_millis(1));
        assert!(b.try_take(clock.now()).is_ok());
        assert!(b.try_take(clock.now()).is_err());
        clock.advance(Duration::from_secs(10));
        assert_eq!(b.level(clock.now()), 3.0, "never above the burst");
        // A stale `now` from a slower thread refills nothing and does not rewind.
        let before = clock.now() - Duration::from_secs(5);
        assert!(b.try_take(before).is_ok());
        assert_eq!(b.level(clock.now()), 2.0);
    }

    #[test]
    fn quotas_count_fixed_windows() {
        let clock = ManualClock::new();
        let q = Quota::new(2, Duration::from_secs(60), clock.now());
        assert!(q.try_take(clock.now()).is_ok() && q.try_take(clock.now()).is_ok());
        clock.advance(Duration::from_secs(20));
        assert_eq!(q.try_take(clock.now()), Err(Duration::from_secs(40)));
        q.refund();
        assert!(q.try_take(clock.now()).is_ok());
        clock.advance(Duration::from_secs(100));
        assert_eq!(q.usage(clock.now()), (0, 2, Duration::from_secs(60)), "t=120 s starts the third window");
        assert!(q.try_take(clock.now()).is_ok());
    }

    #[test]
    fn concurrency_slots_come_back() {
        let c = Concurrency::new(1);
        let s = c.try_enter().expect("free");
        assert!(c.try_enter().is_none());
        drop(s);
        assert!(c.try_enter().is_some());
    }

    fn limits(yaml: &str, now: Instant) -> Limits {
        let c = Config::from_yaml(yaml).expect("valid");
        let owners: Vec<String> = c.backends.iter().map(|b| b.name.clone()).collect();
        Limits::new(&c, &owners, now)
    }

    #[test]
    fn limits_refund_what_a_later_limit_refused_and_keep_clients_apart() {
        let clock = ManualClock::new();
        let y = "backends:\n  - {name: a, command: x}\n  - {name: b, command: y}\nclients:\n  - {name: bot}\n  - {name: ann}\nlimits:\n  clients:\n    - {client: bot, rate: 1, burst: 5, quota: {calls: 3, window_ms: 1000}}\n  client_backends:\n    - {client: bot, backend: b, rate: 1, burst: 1}\n  backends:\n    - {backend: a, rate: 1, burst: 2}\n";
        let l = limits(y, clock.now());
        let now = clock.now();
        // bot on b: its pair bucket allows one, and the refusal gives back the client token.
        assert!(l.admit(Some(0), 1, now).is_ok());
        assert_eq!(l.admit(Some(0), 1, now).map(|_| ()).unwrap_err().kind, LimitKind::ClientBackend);
        // bot on a: the backend bucket (2) allows one more before the quota (3) is used up.
        assert!(l.admit(Some(0), 0, now).is_ok());
        assert!(l.admit(Some(0), 0, now).is_ok());
        let e = l.admit(Some(0), 0, now).map(|_| ()).unwrap_err();
        assert_eq!(e.kind, LimitKind::Backend, "{e:?}");
        // ann shares only the backend bucket: b is free for her, a is empty for everyone.
        assert!(l.admit(Some(1), 1, now).is_ok() && l.admit(Some(1), 1, now).is_ok());
        assert_eq!(l.admit(Some(1), 0, now).map(|_| ()).unwrap_err().kind, LimitKind::Backend);
        clock.advance(Duration::from_secs(1));
        let s = l.status(clock.now());
        assert_eq!(s["clients"][0]["quota"]["used"], 0, "{s}");
        assert_eq!(s["backends"][0]["bucket"]["tokens"], 1.0, "{s}");
    }

    #[test]
    fn the_concurrency_cap_holds_until_the_permit_drops() {
        let y = "clients:\n  - {name: bot}\nlimits:\n  clients:\n    - {client: bot, concurrency: 1}\n";
        let l = limits(y, Instant::now());
        let p = l.admit(Some(0), 0, Instant::now()).expect("free");
        assert_eq!(l.admit(Some(0), 0, Instant::now()).map(|_| ()).unwrap_err().kind, LimitKind::Concurrency);
        assert!(l.admit(None, 0, Instant::now()).is_ok(), "an unlimited caller is not capped");
        drop(p);
        assert!(l.admit(Some(0), 0, Instant::now()).is_ok());
    }
}
