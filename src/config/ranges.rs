//! Every number against its documented range (the `MAX_*` constants): a huge queue or
//! buffer would be allocated up front, and a huge duration overflows deadline arithmetic.
//! The error names the path and line but not the value, which may be a mistyped secret.

use super::lines::Locator;
use super::{
    Config, MAX_BYTES, MAX_CONCURRENCY, MAX_COUNT, MAX_DURATION_MS, MAX_MIN_CALLS, MAX_PAGE_SIZE, MAX_QUEUE_CAPACITY,
    MAX_RETRIES_PER_SEC, MAX_RETRY_RATIO, MAX_SPIN_US, MAX_WEIGHT,
};
use crate::error::{Error, Result};

/// The first setting outside its range, as an error.
pub(super) fn check(c: &Config, at: Locator<'_>) -> Result<()> {
    for (path, value, min, max) in integer_ranges(c) {
        if !(min..=max).contains(&value) {
            return Err(out_of_range(&path, &min.to_string(), &max.to_string(), at));
        }
    }
    let b = &c.router.retry_budget;
    for (field, value, max) in
        [("ratio", b.ratio, MAX_RETRY_RATIO), ("min_per_sec", b.min_per_sec, MAX_RETRIES_PER_SEC)]
    {
        // Written so that NaN fails too.
        if !(value >= 0.0 && value <= max) {
            return Err(out_of_range(&format!("router.retry_budget.{field}"), "0", &max.to_string(), at));
        }
    }
    Ok(())
}

/// `(path, value, min, max)` of every integer setting.
fn integer_ranges(c: &Config) -> Vec<(String, u64, u64, u64)> {
    let r = &c.router;
    let (rs, h, br) = (&r.restart, &r.health, &r.breaker);
    let ms = |path: &str, v: u64, min: u64| (path.to_owned(), v, min, MAX_DURATION_MS);
    let mut out = vec![
        ms("router.request_timeout_ms", r.request_timeout_ms, 1),
        ms("router.init_timeout_ms", r.init_timeout_ms, 1),
        ("router.queue_capacity".into(), r.queue_capacity as u64, 1, MAX_QUEUE_CAPACITY),
        ("router.max_message_bytes".into(), r.max_message_bytes as u64, 1024, MAX_BYTES),
        ("router.page_size".into(), r.page_size as u64, 1, MAX_PAGE_SIZE),
        ms("router.refresh_interval_ms", r.refresh_interval_ms, 0),
        ms("router.shutdown_grace_ms", r.shutdown_grace_ms, 0),
        ms("router.max_call_ms", r.max_call_ms, 0),
        ("router.spin_us".into(), r.spin_us.unwrap_or(0), 0, MAX_SPIN_US),
        ms("router.restart.initial_backoff_ms", rs.initial_backoff_ms, 0),
        ms("router.restart.max_backoff_ms", rs.max_backoff_ms, 0),
        ms("router.restart.stable_after_ms", rs.stable_after_ms, 0),
        ("router.restart.max_restarts".into(), u64::from(rs.max_restarts), 0, MAX_COUNT),
        ms("router.restart.window_ms", rs.window_ms, 0),
        ms("router.restart.cooldown_ms", rs.cooldown_ms, 0),
        ms("router.health.interval_ms", h.interval_ms, 0),
        ms("router.health.timeout_ms", h.timeout_ms, 1),
        ("router.health.failure_threshold".into(), u64::from(h.failure_threshold), 1, MAX_COUNT),
        ms("router.health.max_backoff_ms", h.max_backoff_ms, 0),
        ("router.breaker.failure_threshold".into(), u64::from(br.failure_threshold), 1, MAX_COUNT),
        ms("router.breaker.window_ms", br.window_ms, 0),
        ("router.breaker.min_calls".into(), u64::from(br.min_calls), 0, MAX_MIN_CALLS),
        ms("router.breaker.open_timeout_ms", br.open_timeout_ms, 0),
        ("router.breaker.half_open_max_probes".into(), u64::from(br.half_open_max_probes), 1, MAX_COUNT),
    ];
    for (i, b) in c.backends.iter().enumerate() {
        let field = |name: &str| format!("backends[{i}].{name}");
        out.push((field("weight"), u64::from(b.weight), 1, MAX_WEIGHT));
        let optional = [
            ("timeout_ms", b.timeout_ms, MAX_DURATION_MS),
            ("connect_timeout_ms", b.connect_timeout_ms, MAX_DURATION_MS),
            ("read_timeout_ms", b.read_timeout_ms, MAX_DURATION_MS),
            ("max_response_bytes", b.max_response_bytes.map(|x| x as u64), MAX_BYTES),
            ("concurrency", b.concurrency.map(|x| x as u64), MAX_CONCURRENCY),
        ];
        for (name, v, max) in optional {
            if let Some(v) = v {
                out.push((field(name), v, 1, max));
            }
        }
    }
    out
}

fn out_of_range(path: &str, min: &str, max: &str, at: Locator<'_>) -> Error {
    Error::Config(format!("{path}: must be between {min} and {max}{}", at.path(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<()>) -> String {
        match r {
            Err(Error::Config(m)) => m,
            other => panic!("not a config error: {other:?}"),
        }
    }

    fn parse(y: &str) -> Config {
        serde_norway::from_str(y).expect("test YAML parses")
    }

    #[test]
    fn defaults_and_edges_are_in_range() {
        assert!(check(&Config::default(), Locator(None)).is_ok());
        let y = "router:\n  queue_capacity: 1000000\n  max_message_bytes: 1073741824\n  request_timeout_ms: 86400000\n  refresh_interval_ms: 0\n";
        assert!(check(&parse(y), Locator(Some(y))).is_ok());
    }

    #[test]
    fn out_of_range_names_path_bounds_and_line_not_the_value() {
        let y = "router:\n  restart:\n    max_restarts: 123456789\n";
        let e = err(check(&parse(y), Locator(Some(y))));
        assert_eq!(e, "router.restart.max_restarts: must be between 0 and 10000 (line 3)");
        let y = "backends:\n  - name: a\n    command: x\n    weight: 10001\n";
        let e = err(check(&parse(y), Locator(Some(y))));
        assert_eq!(e, "backends[0].weight: must be between 1 and 10000 (line 4)");
        let y = "router:\n  retry_budget:\n    ratio: .nan\n";
        let e = err(check(&parse(y), Locator(Some(y))));
        assert_eq!(e, "router.retry_budget.ratio: must be between 0 and 100 (line 3)");
        let y = "backends:\n  - {name: h, url: \"http://h/\", concurrency: 257}\n";
        let e = err(check(&parse(y), Locator(None)));
        assert_eq!(e, "backends[0].concurrency: must be between 1 and 256");
    }

    #[test]
    fn every_integer_setting_has_a_range() {
        let c = parse(
            "backends:\n  - {name: h, url: \"http://h/\", timeout_ms: 1, connect_timeout_ms: 1, read_timeout_ms: 1, max_response_bytes: 1, concurrency: 1}\n",
        );
        let paths: Vec<String> = integer_ranges(&c).into_iter().map(|(p, ..)| p).collect();
        assert_eq!(paths.len(), 24 + 6, "{paths:?}");
        assert!(paths.iter().all(|p| p.starts_with("router.") || p.starts_with("backends[0].")));
        assert!(integer_ranges(&c).iter().all(|(_, _, min, max)| min <= max));
    }
}
