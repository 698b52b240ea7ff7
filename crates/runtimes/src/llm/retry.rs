//! How long to wait before the next attempt: the server's `Retry-After` when it sent one (seconds
//! or an HTTP date, clamped), else exponential backoff with jitter so that many clients retrying
//! the same outage spread out instead of returning together.

use std::hash::BuildHasher;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// The delay before retry number `retry` (1 for the first retry).
pub(crate) fn delay(
    retry: u32,
    retry_after: Option<Duration>,
    initial: Duration,
    max_backoff: Duration,
    max_retry_after: Duration,
) -> Duration {
    match retry_after {
        Some(wait) => wait.min(max_retry_after),
        None => backoff(retry, initial, max_backoff, jitter_fraction()),
    }
}

/// `initial · 2^(retry-1)`, capped at `max`, then scaled into `[½, 1]` of itself by `jitter`
/// (in `[0, 1)`): never less than half the nominal wait, never more than the cap.
pub(crate) fn backoff(retry: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let doublings = retry.saturating_sub(1).min(30);
    let nominal = initial.saturating_mul(1 << doublings).min(max);
    nominal.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A fresh random number in `[0, 1)`. `RandomState` is seeded randomly per instance, which is all
/// the randomness jitter needs, without a dependency.
fn jitter_fraction() -> f64 {
    let bits = std::collections::hash_map::RandomState::new().hash_one(0u8);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The server's requested wait: `retry-after-ms` (OpenAI), else `Retry-After` as delay-seconds or
/// an HTTP date (relative to `now`). A date in the past means "now".
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = header("retry-after-ms").and_then(parse_seconds) {
        return Some(ms / 1000);
    }
    header("retry-after").and_then(|value| parse_retry_after(value, now))
}

pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Some(delay) = parse_seconds(value) {
        return Some(delay);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A non-negative decimal number of units (seconds, or milliseconds for `retry-after-ms`).
fn parse_seconds(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let seconds: f64 = value.parse().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn retry_after_in_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("0.5", now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-3", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn retry_after_as_an_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // The other two formats RFC 9110 asks recipients to accept.
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 07:28:05 2015", now),
            Some(Duration::from_secs(5))
        );
        // A date already past means: retry now.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_headers_prefer_milliseconds() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(
            retry_after(&headers, SystemTime::now()),
            Some(Duration::from_secs(7))
        );
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(
            retry_after(&headers, SystemTime::now()),
            Some(Duration::from_millis(250))
        );
        assert_eq!(retry_after(&HeaderMap::new(), SystemTime::now()), None);
    }

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let s = Duration::from_secs;
        assert_eq!(backoff(1, s(1), s(30), 1.0), s(1));
        assert_eq!(backoff(2, s(1), s(30), 1.0), s(2));
        assert_eq!(backoff(3, s(1), s(30), 1.0), s(4));
        assert_eq!(backoff(6, s(1), s(30), 1.0), s(30));
        assert_eq!(backoff(u32::MAX, s(1), s(30), 1.0), s(30));
        assert_eq!(backoff(3, s(1), s(30), 0.0), s(2));
        for _ in 0..100 {
            let d = delay(2, None, s(1), s(30), s(120));
            assert!(d >= s(1) && d <= s(2), "{d:?}");
        }
    }

    #[test]
    fn retry_after_is_clamped() {
        let s = Duration::from_secs;
        assert_eq!(delay(1, Some(s(600)), s(1), s(30), s(120)), s(120));
        assert_eq!(delay(1, Some(s(3)), s(1), s(30), s(120)), s(3));
    }
}
