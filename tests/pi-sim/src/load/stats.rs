//! Counting answers and latencies: a log-linear histogram (about 1.5 % resolution, fixed size)
//! per tenant, so percentiles cost no memory per request.

use std::time::Duration;

use outpost_core::device::{MessageCode, Status};

/// Sub-buckets per power of two: 64 gives a resolution of 1/64.
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// Powers of two covered, in microseconds: up to 2^40 µs (12 days).
const POWERS: usize = 40;

/// Latencies in microseconds.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max_us: u64,
    sum_us: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; POWERS * SUB],
            total: 0,
            max_us: 0,
            sum_us: 0,
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let power = 63 - us.leading_zeros();
    let shift = power - SUB_BITS;
    let sub = (us >> shift) as usize - SUB;
    let index = (power - SUB_BITS + 1) as usize * SUB + sub;
    index.min(POWERS * SUB - 1)
}

/// The largest value a bucket holds (percentiles are reported at the bucket's top, so they
/// never flatter).
fn bucket_top(index: usize) -> u64 {
    if index < SUB {
        return index as u64;
    }
    let power = (index / SUB) as u32 - 1 + SUB_BITS;
    let sub = (index % SUB) as u64 + SUB as u64;
    let shift = power - SUB_BITS;
    ((sub + 1) << shift) - 1
}

impl Histogram {
    /// Adds one latency.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket_of(us)] += 1;
        self.total += 1;
        self.max_us = self.max_us.max(us);
        self.sum_us += u128::from(us);
    }

    /// Adds another histogram.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max_us = self.max_us.max(other.max_us);
        self.sum_us += other.sum_us;
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `p` quantile (0..=1) in milliseconds; `None` when empty.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((self.total as f64 * p).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(bucket_top(index).min(self.max_us) as f64 / 1000.0);
            }
        }
        Some(self.max_us as f64 / 1000.0)
    }

    /// The largest value in milliseconds.
    pub fn max_ms(&self) -> Option<f64> {
        (self.total > 0).then(|| self.max_us as f64 / 1000.0)
    }

    /// The mean in milliseconds.
    pub fn mean_ms(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum_us as f64 / self.total as f64 / 1000.0)
    }
}

/// How one request ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A protocol answer.
    Answer(Status, MessageCode),
    /// The body was not a protocol answer (HTTP status kept).
    NotProtocol,
    /// No answer.
    Transport(NoAnswer),
}

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAnswer {
    /// Not within `--timeout`.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// The connection broke (reset, closed mid-answer).
    Broken,
}

impl NoAnswer {
    /// How the results file spells it.
    pub fn name(self) -> &'static str {
        match self {
            NoAnswer::Timeout => "TIMEOUT",
            NoAnswer::Connect => "CONNECT",
            NoAnswer::Broken => "BROKEN",
        }
    }
}

/// What was sent and answered for one tenant.
#[derive(Debug, Clone, Default)]
pub struct TenantStats {
    /// Requests answered or failed.
    pub requests: u64,
    /// By status word: OK, OK_POLL, OK_TRY_AGAIN, FAILED.
    pub ok: u64,
    /// `OK_POLL`.
    pub ok_poll: u64,
    /// `OK_TRY_AGAIN`.
    pub try_again: u64,
    /// `FAILED`.
    pub failed: u64,
    /// Answers that were not protocol JSON.
    pub not_protocol: u64,
    /// Requests with no answer at all.
    pub transport_errors: u64,
    /// Of those, timed out.
    pub timeouts: u64,
    /// Of those, no connection could be made.
    pub connect_errors: u64,
    /// Answers per message code.
    pub codes: Vec<(MessageCode, u64)>,
    /// Reports in `usage_report`s answered `OK_POLL` (duplicates included).
    pub reports_accepted: u64,
    /// Of those, reports sent for the first time.
    pub new_reports_accepted: u64,
    /// Of those, reports sent again on purpose (duplicates).
    pub duplicate_reports_accepted: u64,
    /// `result_poll`s sent.
    pub polls: u64,
    /// Protocol answers (not `FAILED`) that did not echo the request's nonce.
    pub nonce_not_echoed: u64,
    /// Open-loop requests sent more than 10 ms after they were due: the generator was short of
    /// connections (or of CPU), and latencies count that wait.
    pub late_sends: u64,
    /// Payload bytes of the reports sent.
    pub payload_bytes: u64,
    /// Reports sent.
    pub reports_sent: u64,
    /// Latency of every answered request (open-loop: from the intended send time).
    pub latency: Histogram,
    /// Of those, the `OK_POLL` and `OK` answers.
    pub latency_ok: Histogram,
    /// Of those, the `OK_TRY_AGAIN` answers.
    pub latency_try_again: Histogram,
}

impl TenantStats {
    /// Counts one outcome.
    pub fn count(&mut self, outcome: Outcome) {
        self.requests += 1;
        match outcome {
            Outcome::Answer(status, code) => {
                match status {
                    Status::Ok => self.ok += 1,
                    Status::OkPoll => self.ok_poll += 1,
                    Status::OkTryAgain => self.try_again += 1,
                    Status::Failed => self.failed += 1,
                }
                match self.codes.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, n)) => *n += 1,
                    None => self.codes.push((code, 1)),
                }
            }
            Outcome::NotProtocol => self.not_protocol += 1,
            Outcome::Transport(why) => {
                self.transport_errors += 1;
                match why {
                    NoAnswer::Timeout => self.timeouts += 1,
                    NoAnswer::Connect => self.connect_errors += 1,
                    NoAnswer::Broken => {}
                }
            }
        }
    }

    /// Adds another tenant's figures (for the total).
    pub fn merge(&mut self, other: &TenantStats) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.ok_poll += other.ok_poll;
        self.try_again += other.try_again;
        self.failed += other.failed;
        self.not_protocol += other.not_protocol;
        self.transport_errors += other.transport_errors;
        self.timeouts += other.timeouts;
        self.connect_errors += other.connect_errors;
        for (code, n) in &other.codes {
            match self.codes.iter_mut().find(|(c, _)| c == code) {
                Some((_, m)) => *m += n,
                None => self.codes.push((*code, *n)),
            }
        }
        self.reports_accepted += other.reports_accepted;
        self.new_reports_accepted += other.new_reports_accepted;
        self.duplicate_reports_accepted += other.duplicate_reports_accepted;
        self.polls += other.polls;
        self.nonce_not_echoed += other.nonce_not_echoed;
        self.late_sends += other.late_sends;
        self.payload_bytes += other.payload_bytes;
        self.reports_sent += other.reports_sent;
        self.latency.merge(&other.latency);
        self.latency_ok.merge(&other.latency_ok);
        self.latency_try_again.merge(&other.latency_try_again);
    }

    /// Counts the latency of an answer.
    pub fn record_latency(&mut self, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Transport(_) => return,
            Outcome::Answer(Status::Ok | Status::OkPoll, _) => self.latency_ok.record(latency),
            Outcome::Answer(Status::OkTryAgain, _) => self.latency_try_again.record(latency),
            Outcome::Answer(Status::Failed, _) | Outcome::NotProtocol => {}
        }
        self.latency.record(latency);
    }

    /// Share of answers that were `OK_TRY_AGAIN` (0 when nothing was answered).
    pub fn try_again_share(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.try_again as f64 / self.requests as f64
        }
    }
}

/// The protocol name of a message code (`USAGE_ACCEPTED`).
pub fn code_name(code: MessageCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{code:?}"))
}

/// The protocol name of a status word (`OK_POLL`).
pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Ok => "OK",
        Status::OkPoll => "OK_POLL",
        Status::OkTryAgain => "OK_TRY_AGAIN",
        Status::Failed => "FAILED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_the_resolution() {
        let mut h = Histogram::default();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        for (p, want) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0), (1.0, 1000.0)] {
            let got = h.percentile_ms(p).expect("values");
            assert!(
                got >= want && got <= want * 1.02,
                "p{p}: {got} (want {want})"
            );
        }
        assert_eq!(h.max_ms(), Some(1000.0));
        assert_eq!(Histogram::default().percentile_ms(0.5), None);
    }

    #[test]
    fn buckets_hold_their_values() {
        for us in (0..200_000u64)
            .step_by(7)
            .chain([u64::from(u32::MAX), 1 << 39])
        {
            let index = bucket_of(us);
            assert!(bucket_top(index) >= us, "{us} in bucket {index}");
            if index > 0 {
                assert!(bucket_top(index - 1) < us, "{us} above bucket {index}");
            }
        }
    }
}
