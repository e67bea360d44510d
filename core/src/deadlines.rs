//! Reporting deadlines of a product instance under a policy (`docs/protocol.md` section 6): when
//! its next usage report and the ACK for its last one are due. Pure: the caller passes the policy,
//! the PI's usage history and the time (from the injectable clock), so every rule is testable
//! without waiting.
//!
//! The rules [ours where the public material is silent]:
//! - A PI that has never consumed a license owes nothing.
//! - Days are per license kind (perpetual, subscription, enforced, export-controlled); 0 means
//!   "no requirement" for that kind. With several kinds in use, the strictest (smallest non-zero)
//!   applies.
//! - First report: due `first_report` days after the PI first consumed a license, until it
//!   reports.
//! - Ongoing: due `ongoing` days after its latest report.
//! - Usage change (a license added or removed, zero to some or back): due `on_change` days after
//!   the change, unless a report came after it; the kinds involved in the change count.
//! - A tenant may narrow the interval: with `reporting_interval_days` set, every requirement is
//!   at most that many days, and a PI in use reports at least that often (never wider); it
//!   never creates a usage-change requirement the policy does not have.
//! - A report sent before the PI first consumed a license is not its first report.
//! - ACK: when the policy requires one, it is due by the time the next report would be due after
//!   the oldest unacknowledged report (its ongoing interval, else its on-change interval).

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::signed_file::{PolicyData, PolicyTerms};

/// The kind of a license, which selects the policy's reporting days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenseKind {
    /// Unenforced, perpetual.
    Perpetual,
    /// Unenforced, subscription.
    Subscription,
    /// Enforced (needs a SLAC).
    Enforced,
    /// Export-controlled (needs a SLAC).
    ExportControlled,
}

impl LicenseKind {
    /// The kind of an entitlement from its enforcement type and term.
    pub fn of(enforcement: &str, term: &str) -> Self {
        match (enforcement, term) {
            ("export_controlled", _) => LicenseKind::ExportControlled,
            ("enforced", _) => LicenseKind::Enforced,
            (_, "subscription") => LicenseKind::Subscription,
            _ => LicenseKind::Perpetual,
        }
    }
}

/// The policy's days for one kind of license.
pub fn terms(policy: &PolicyData, kind: LicenseKind) -> PolicyTerms {
    match kind {
        LicenseKind::Perpetual => policy.perpetual,
        LicenseKind::Subscription => policy.subscription,
        LicenseKind::Enforced => policy.enforced,
        LicenseKind::ExportControlled => policy.export,
    }
}

/// What the deadlines are computed from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageHistory {
    /// Kinds of the licenses the PI consumes now (count above zero).
    pub kinds_in_use: Vec<LicenseKind>,
    /// When it first consumed a license; `None`: never.
    pub first_consumed_at: Option<DateTime<Utc>>,
    /// Its latest usage change.
    pub last_change_at: Option<DateTime<Utc>>,
    /// Kinds of the licenses that change added or removed.
    pub kinds_in_change: Vec<LicenseKind>,
    /// Its latest report.
    pub last_report_at: Option<DateTime<Utc>>,
    /// Its oldest report CSSM has not acknowledged.
    pub oldest_unacked_report_at: Option<DateTime<Utc>>,
}

/// Why a report is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DueReason {
    /// The first report after the PI started consuming licenses.
    FirstReport,
    /// The ongoing reporting frequency.
    Ongoing,
    /// A usage change not reported yet.
    UsageChange,
}

/// When a PI must report and have its ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Deadlines {
    /// The earliest report deadline and why; `None`: no report owed.
    pub report_due: Option<(DateTime<Utc>, DueReason)>,
    /// When the ACK of the oldest unacknowledged report is due; `None`: none owed.
    pub ack_due: Option<DateTime<Utc>>,
}

/// How a tenant's interval applies to a requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Narrowing {
    /// It only shortens a requirement the policy has.
    Shorten,
    /// It also imposes one where the policy has none (ongoing reporting of a PI in use).
    Impose,
}

/// Smallest non-zero value of `days` over `kinds`, narrowed to `narrowing`; `None` when no kind
/// has a requirement (and the narrowing does not impose one).
fn strictest(
    policy: &PolicyData,
    kinds: &[LicenseKind],
    days: impl Fn(PolicyTerms) -> u32,
    narrowing: Option<u32>,
    how: Narrowing,
) -> Option<u32> {
    let policy_days = kinds
        .iter()
        .map(|k| days(terms(policy, *k)))
        .filter(|d| *d > 0)
        .min();
    match (policy_days, narrowing.filter(|n| *n > 0)) {
        (Some(p), Some(n)) => Some(p.min(n)),
        (Some(p), None) => Some(p),
        (None, Some(n)) if how == Narrowing::Impose && !kinds.is_empty() => Some(n),
        _ => None,
    }
}

/// `at` plus `days`; `None` beyond the calendar's end (a policy may carry absurd numbers).
fn plus_days(at: DateTime<Utc>, days: u32) -> Option<DateTime<Utc>> {
    at.checked_add_signed(Duration::try_days(i64::from(days))?)
}

/// The deadlines of a PI. `reporting_interval_days` is the tenant's narrowing, if any.
pub fn deadlines(
    policy: &PolicyData,
    reporting_interval_days: Option<u32>,
    history: &UsageHistory,
) -> Deadlines {
    use Narrowing::{Impose, Shorten};
    let Some(first_consumed) = history.first_consumed_at else {
        return Deadlines::default();
    };
    let in_use = &history.kinds_in_use;
    let narrow = reporting_interval_days;
    // A report sent before the PI consumed anything is not its first report.
    let reported = history.last_report_at.filter(|r| *r >= first_consumed);
    let mut candidates: Vec<(DateTime<Utc>, DueReason)> = Vec::new();
    match reported {
        None => {
            if let Some(at) = strictest(policy, in_use, |t| t.first_report, narrow, Impose)
                .and_then(|days| plus_days(first_consumed, days))
            {
                candidates.push((at, DueReason::FirstReport));
            }
        }
        Some(last) => {
            if let Some(at) = strictest(policy, in_use, |t| t.ongoing, narrow, Impose)
                .and_then(|days| plus_days(last, days))
            {
                candidates.push((at, DueReason::Ongoing));
            }
        }
    }
    if let Some(changed) = history.last_change_at
        && reported.is_none_or(|r| changed > r)
        && let Some(at) = strictest(
            policy,
            &history.kinds_in_change,
            |t| t.on_change,
            narrow,
            Shorten,
        )
        .and_then(|days| plus_days(changed, days))
    {
        candidates.push((at, DueReason::UsageChange));
    }
    let report_due = candidates.into_iter().min_by_key(|(at, _)| *at);
    let ack_due = match history.oldest_unacked_report_at {
        Some(sent) if policy.ack_required => {
            strictest(policy, in_use, |t| t.ongoing, narrow, Impose)
                .or_else(|| strictest(policy, in_use, |t| t.on_change, narrow, Shorten))
                .or_else(|| {
                    strictest(
                        policy,
                        &history.kinds_in_change,
                        |t| t.on_change,
                        narrow,
                        Shorten,
                    )
                })
                .and_then(|days| plus_days(sent, days))
        }
        _ => None,
    };
    Deadlines {
        report_due,
        ack_due,
    }
}

/// Where a deadline stands at `now`, for alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "days")]
pub enum Standing {
    /// Further away than the warning window.
    OnTime,
    /// Due within the warning window: in this many whole days (0: today).
    DueIn(i64),
    /// Passed this many whole days ago (0: today).
    Overdue(i64),
}

/// Where `due` stands at `now`, warning `warn_days` ahead.
pub fn standing(due: DateTime<Utc>, now: DateTime<Utc>, warn_days: i64) -> Standing {
    if due <= now {
        Standing::Overdue((now - due).num_days())
    } else if due - now <= Duration::days(warn_days) {
        Standing::DueIn((due - now).num_days())
    } else {
        Standing::OnTime
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::signed_file::PolicyTerms;

    use LicenseKind::{Enforced, ExportControlled, Perpetual, Subscription};

    /// Day `n` after a fixed origin.
    fn day(n: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
            + Duration::days(n)
    }

    struct Case {
        name: &'static str,
        history: UsageHistory,
        narrowing: Option<u32>,
        report_due: Option<(i64, DueReason)>,
        ack_due: Option<i64>,
    }

    fn history(
        in_use: &[LicenseKind],
        first: Option<i64>,
        change: Option<(i64, &[LicenseKind])>,
        report: Option<i64>,
        unacked: Option<i64>,
    ) -> UsageHistory {
        UsageHistory {
            kinds_in_use: in_use.to_vec(),
            first_consumed_at: first.map(day),
            last_change_at: change.map(|(d, _)| day(d)),
            kinds_in_change: change.map(|(_, k)| k.to_vec()).unwrap_or_default(),
            last_report_at: report.map(day),
            oldest_unacked_report_at: unacked.map(day),
        }
    }

    /// The Cisco default policy table (docs/protocol.md section 6): perpetual 365/0/90,
    /// subscription 90/90/90, enforced and export-controlled 0/0/0, ACK required.
    #[test]
    fn the_cisco_default_policy_table() {
        use DueReason::{FirstReport, Ongoing, UsageChange};
        let cases = [
            Case {
                name: "never consumed a license: nothing owed",
                history: history(&[], None, None, None, None),
                narrowing: None,
                report_due: None,
                ack_due: None,
            },
            Case {
                name: "never consumed, even with a tenant interval",
                history: history(&[], None, None, None, None),
                narrowing: Some(30),
                report_due: None,
                ack_due: None,
            },
            Case {
                name: "perpetual: first report 365 days after first use",
                history: history(&[Perpetual], Some(0), None, None, None),
                narrowing: None,
                report_due: Some((365, FirstReport)),
                ack_due: None,
            },
            Case {
                name: "perpetual, reported: no ongoing requirement",
                history: history(&[Perpetual], Some(0), None, Some(10), None),
                narrowing: None,
                report_due: None,
                ack_due: None,
            },
            Case {
                name: "perpetual, reported, unacknowledged: ACK within the on-change interval",
                history: history(&[Perpetual], Some(0), None, Some(10), Some(10)),
                narrowing: None,
                report_due: None,
                ack_due: Some(100),
            },
            Case {
                name: "perpetual, usage changed after the report: 90 days",
                history: history(
                    &[Perpetual],
                    Some(0),
                    Some((100, &[Perpetual])),
                    Some(10),
                    None,
                ),
                narrowing: None,
                report_due: Some((190, UsageChange)),
                ack_due: None,
            },
            Case {
                name: "perpetual, change already reported",
                history: history(
                    &[Perpetual],
                    Some(0),
                    Some((100, &[Perpetual])),
                    Some(120),
                    None,
                ),
                narrowing: None,
                report_due: None,
                ack_due: None,
            },
            Case {
                name: "perpetual, change before the first report: the earlier deadline",
                history: history(&[Perpetual], Some(0), Some((5, &[Perpetual])), None, None),
                narrowing: None,
                report_due: Some((95, UsageChange)),
                ack_due: None,
            },
            Case {
                name: "usage went back to zero: the removal is reported within 90 days",
                history: history(&[], Some(0), Some((200, &[Perpetual])), Some(10), None),
                narrowing: None,
                report_due: Some((290, UsageChange)),
                ack_due: None,
            },
            Case {
                name: "subscription: first report within 90 days",
                history: history(&[Subscription], Some(0), None, None, None),
                narrowing: None,
                report_due: Some((90, FirstReport)),
                ack_due: None,
            },
            Case {
                name: "subscription: then every 90 days, ACK by the next report",
                history: history(&[Subscription], Some(0), None, Some(50), Some(50)),
                narrowing: None,
                report_due: Some((140, Ongoing)),
                ack_due: Some(140),
            },
            Case {
                name: "perpetual and subscription: the strictest applies",
                history: history(&[Perpetual, Subscription], Some(0), None, None, None),
                narrowing: None,
                report_due: Some((90, FirstReport)),
                ack_due: None,
            },
            Case {
                name: "enforced only (0/0/0): the SLAC governs, no report owed",
                history: history(&[Enforced], Some(0), None, None, None),
                narrowing: None,
                report_due: None,
                ack_due: None,
            },
            Case {
                name: "export-controlled only (0/0/0): no report owed",
                history: history(
                    &[ExportControlled],
                    Some(0),
                    Some((3, &[ExportControlled])),
                    None,
                    None,
                ),
                narrowing: None,
                report_due: None,
                ack_due: None,
            },
            Case {
                name: "enforced beside perpetual: the perpetual days apply",
                history: history(&[Enforced, Perpetual], Some(0), None, None, None),
                narrowing: None,
                report_due: Some((365, FirstReport)),
                ack_due: None,
            },
            Case {
                name: "tenant narrows the subscription interval to 30 days",
                history: history(&[Subscription], Some(0), None, Some(50), Some(50)),
                narrowing: Some(30),
                report_due: Some((80, Ongoing)),
                ack_due: Some(80),
            },
            Case {
                name: "tenant interval imposes ongoing reports on perpetual use",
                history: history(&[Perpetual], Some(0), None, Some(10), None),
                narrowing: Some(30),
                report_due: Some((40, Ongoing)),
                ack_due: None,
            },
            Case {
                name: "a report before first use is not the first report",
                history: history(&[Subscription], Some(100), None, Some(0), None),
                narrowing: None,
                report_due: Some((190, FirstReport)),
                ack_due: None,
            },
            Case {
                name: "a tenant interval does not impose a change report the policy lacks",
                history: history(&[], Some(0), Some((200, &[Enforced])), Some(10), None),
                narrowing: Some(30),
                report_due: None,
                ack_due: None,
            },
            Case {
                name: "a tenant interval shortens a change report",
                history: history(&[], Some(0), Some((200, &[Perpetual])), Some(10), None),
                narrowing: Some(30),
                report_due: Some((230, UsageChange)),
                ack_due: None,
            },
            Case {
                name: "a wider tenant interval never widens the policy",
                history: history(&[Subscription], Some(0), None, Some(50), None),
                narrowing: Some(200),
                report_due: Some((140, Ongoing)),
                ack_due: None,
            },
        ];
        let policy = PolicyData::cisco_default();
        for case in cases {
            let got = deadlines(&policy, case.narrowing, &case.history);
            let want = Deadlines {
                report_due: case.report_due.map(|(d, r)| (day(d), r)),
                ack_due: case.ack_due.map(day),
            };
            assert_eq!(got, want, "{}", case.name);
        }
    }

    #[test]
    fn a_custom_policy_from_cssm_replaces_the_default_days() {
        let mut policy = PolicyData::cisco_default();
        policy.kind = "custom".into();
        policy.ack_required = false;
        policy.perpetual = PolicyTerms {
            first_report: 30,
            ongoing: 60,
            on_change: 15,
        };
        let first = deadlines(
            &policy,
            None,
            &history(&[Perpetual], Some(0), None, None, Some(0)),
        );
        assert_eq!(first.report_due, Some((day(30), DueReason::FirstReport)));
        assert_eq!(first.ack_due, None, "no ACK required by this policy");
        let later = deadlines(
            &policy,
            None,
            &history(&[Perpetual], Some(0), None, Some(40), None),
        );
        assert_eq!(later.report_due, Some((day(100), DueReason::Ongoing)));
    }

    #[test]
    fn absurd_policy_days_give_no_deadline_instead_of_a_panic() {
        let mut policy = PolicyData::cisco_default();
        policy.subscription.first_report = u32::MAX;
        let got = deadlines(
            &policy,
            None,
            &history(&[Subscription], Some(0), None, None, None),
        );
        assert_eq!(got.report_due, None);
    }

    #[test]
    fn standing_follows_the_injected_clock() {
        let clock = ManualClock::new(day(300));
        let due = day(365);
        assert_eq!(standing(due, clock.now(), 30), Standing::OnTime);
        clock.advance(Duration::days(50));
        assert_eq!(standing(due, clock.now(), 30), Standing::DueIn(15));
        clock.advance(Duration::days(15));
        assert_eq!(standing(due, clock.now(), 30), Standing::Overdue(0));
        clock.advance(Duration::days(8));
        assert_eq!(standing(due, clock.now(), 30), Standing::Overdue(8));
    }

    #[test]
    fn license_kinds_come_from_enforcement_and_term() {
        assert_eq!(LicenseKind::of("unenforced", "perpetual"), Perpetual);
        assert_eq!(LicenseKind::of("unenforced", "subscription"), Subscription);
        assert_eq!(LicenseKind::of("enforced", "subscription"), Enforced);
        assert_eq!(
            LicenseKind::of("export_controlled", "perpetual"),
            ExportControlled
        );
    }
}
