//! Scheduled capacity: which windows of `spec.autoscaling.schedules` are
//! active at an instant, the minRunners and idleRunners they put in effect,
//! and when the next window opens or closes (the pool's next reconcile).
//! Pure: the instant is an argument; time zones come from the tz database
//! compiled into the binary.

use std::time::Duration;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::crd::{AutoscalingSpec, CapacitySchedule, ScheduleStatus, Weekday};

/// What the schedules say at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    pub min: u32,
    pub idle: u32,
    /// Names of the active windows, in spec order.
    pub active: Vec<String>,
    /// The next instant a window opens or closes.
    pub next_change: Option<Timestamp>,
    /// Windows that could not be read (unknown time zone, bad time), with why.
    pub invalid: Vec<String>,
}

impl Effective {
    pub fn until_next_change(&self, now: Timestamp) -> Option<Duration> {
        let next = self.next_change?;
        Duration::try_from(next.duration_since(now)).ok()
    }

    pub fn status(&self) -> ScheduleStatus {
        ScheduleStatus {
            active_windows: self.active.clone(),
            effective_min_runners: self.min.min(i32::MAX as u32) as i32,
            effective_idle_runners: self.idle.min(i32::MAX as u32) as i32,
            next_change: self.next_change.map(|t| t.to_string()),
        }
    }

    /// The message for status when some windows are unusable.
    pub fn problem(&self) -> Option<String> {
        (!self.invalid.is_empty()).then(|| {
            format!(
                "spec.autoscaling.schedules: {}; those windows are ignored",
                self.invalid.join("; ")
            )
        })
    }
}

/// The pool's bounds at `now`: its own minRunners and idleRunners raised by
/// every active window.
pub fn effective(auto: &AutoscalingSpec, now: Timestamp) -> Effective {
    let mut effective = Effective {
        min: auto.min_runners.unwrap_or(0).max(0) as u32,
        idle: auto.idle_runners.unwrap_or(1).max(0) as u32,
        active: Vec::new(),
        next_change: None,
        invalid: Vec::new(),
    };
    for window in &auto.schedules {
        let parsed = match Window::parse(window) {
            Ok(parsed) => parsed,
            Err(why) => {
                effective
                    .invalid
                    .push(format!("window {}: {why}", name(window)));
                continue;
            }
        };
        if parsed.is_active(now) {
            effective.active.push(name(window));
            if let Some(min) = window.min_runners {
                effective.min = effective.min.max(min.max(0) as u32);
            }
            if let Some(idle) = window.idle_runners {
                effective.idle = effective.idle.max(idle.max(0) as u32);
            }
        }
        if let Some(next) = parsed.next_change(now) {
            effective.next_change = Some(effective.next_change.map_or(next, |n| n.min(next)));
        }
    }
    effective
}

fn name(window: &CapacitySchedule) -> String {
    window
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", window.start, window.end))
}

struct Window {
    start: Time,
    end: Time,
    days: [bool; 7],
    zone: TimeZone,
}

impl Window {
    fn parse(spec: &CapacitySchedule) -> Result<Window, String> {
        let zone_name = spec.time_zone.as_deref().unwrap_or("UTC");
        let zone = TimeZone::get(zone_name).map_err(|_| {
            format!("unknown time zone {zone_name:?} (use an IANA name such as Europe/Berlin)")
        })?;
        let mut days = [spec.days.is_none(); 7];
        for day in spec.days.iter().flatten() {
            days[weekday_index(*day)] = true;
        }
        Ok(Window {
            start: parse_hh_mm(&spec.start)?,
            end: parse_hh_mm(&spec.end)?,
            days,
            zone,
        })
    }

    /// The window opening on local date `date`, as instants, if it opens that day.
    fn opening_on(&self, date: Date) -> Option<(Timestamp, Timestamp)> {
        let monday_based = date.weekday().to_monday_zero_offset() as usize;
        if !self.days[monday_based] {
            return None;
        }
        let end_date = if self.end <= self.start {
            date.tomorrow().ok()?
        } else {
            date
        };
        Some((
            self.instant(date.to_datetime(self.start))?,
            self.instant(end_date.to_datetime(self.end))?,
        ))
    }

    /// A local time as an instant. In a DST gap (02:30 on the night clocks
    /// skip 02:00-03:00) it is shifted forward by the gap (03:30); in a fold
    /// (the hour that repeats) it is the first of the two.
    fn instant(&self, local: DateTime) -> Option<Timestamp> {
        self.zone.to_ambiguous_timestamp(local).compatible().ok()
    }

    /// Local dates whose openings can matter at `now`: yesterday's may still
    /// be open (spanning midnight), and the next opening is at most a week on.
    fn openings_around(&self, now: Timestamp) -> impl Iterator<Item = (Timestamp, Timestamp)> + '_ {
        let today = now.to_zoned(self.zone.clone()).date();
        (-1i64..=8).filter_map(move |offset| {
            let date = today.checked_add(offset.days()).ok()?;
            self.opening_on(date)
        })
    }

    fn is_active(&self, now: Timestamp) -> bool {
        self.openings_around(now)
            .any(|(start, end)| start <= now && now < end)
    }

    fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        self.openings_around(now)
            .flat_map(|(start, end)| [start, end])
            .filter(|t| *t > now)
            .min()
    }
}

fn weekday_index(day: Weekday) -> usize {
    match day {
        Weekday::Mon => 0,
        Weekday::Tue => 1,
        Weekday::Wed => 2,
        Weekday::Thu => 3,
        Weekday::Fri => 4,
        Weekday::Sat => 5,
        Weekday::Sun => 6,
    }
}

/// `HH:MM`, 24-hour clock (the CRD refuses anything else; checked again
/// here so a pool stored before the rule existed cannot panic anything).
fn parse_hh_mm(text: &str) -> Result<Time, String> {
    let bad = || format!("{text:?} is not a time of day as HH:MM");
    let (hours, minutes) = text.split_once(':').ok_or_else(bad)?;
    if hours.len() != 2 || minutes.len() != 2 {
        return Err(bad());
    }
    let hours: i8 = hours.parse().map_err(|_| bad())?;
    let minutes: i8 = minutes.parse().map_err(|_| bad())?;
    Time::new(hours, minutes, 0, 0).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto(yaml: &str) -> AutoscalingSpec {
        serde_yaml::from_str(yaml).expect("fixture parses")
    }

    fn at(instant: &str) -> Timestamp {
        instant.parse().expect("an RFC 3339 instant")
    }

    const WORKING_HOURS: &str = r#"
minRunners: 0
maxRunners: 50
idleRunners: 1
schedules:
  - { name: office, start: "08:00", end: "18:00", days: [Mon, Tue, Wed, Thu, Fri], timeZone: Europe/Berlin, minRunners: 5, idleRunners: 3 }
"#;

    #[test]
    fn a_window_raises_the_bounds_only_while_active_in_its_time_zone() {
        let a = auto(WORKING_HOURS);
        // Tuesday 2026-12-01, Berlin is UTC+1 in winter: 08:00 there is 07:00Z.
        let before = effective(&a, at("2026-12-01T06:59:00Z"));
        assert_eq!((before.min, before.idle), (0, 1));
        assert!(before.active.is_empty());
        assert_eq!(before.next_change, Some(at("2026-12-01T07:00:00Z")));

        let during = effective(&a, at("2026-12-01T07:00:00Z"));
        assert_eq!((during.min, during.idle), (5, 3));
        assert_eq!(during.active, ["office"]);
        assert_eq!(during.next_change, Some(at("2026-12-01T17:00:00Z")));

        let after = effective(&a, at("2026-12-01T17:00:00Z"));
        assert_eq!((after.min, after.idle), (0, 1));
        assert_eq!(after.next_change, Some(at("2026-12-02T07:00:00Z")));
        assert!(after.invalid.is_empty());
    }

    #[test]
    fn days_are_the_days_a_window_opens_and_the_weekend_is_skipped() {
        let a = auto(WORKING_HOURS);
        // Friday 18:00 Berlin: closed until Monday 08:00 Berlin.
        let friday_evening = effective(&a, at("2026-12-04T17:30:00Z"));
        assert!(friday_evening.active.is_empty());
        assert_eq!(friday_evening.next_change, Some(at("2026-12-07T07:00:00Z")));
        let saturday_noon = effective(&a, at("2026-12-05T11:00:00Z"));
        assert!(saturday_noon.active.is_empty());
    }

    #[test]
    fn a_window_ending_before_its_start_spans_midnight() {
        let a = auto(
            r#"
maxRunners: 10
schedules:
  - { start: "22:00", end: "06:00", days: [Fri], minRunners: 4 }
"#,
        );
        // Opens Friday 22:00 UTC, closes Saturday 06:00 UTC.
        assert!(effective(&a, at("2026-12-04T21:59:59Z")).active.is_empty());
        let late_friday = effective(&a, at("2026-12-04T23:00:00Z"));
        assert_eq!(late_friday.active, ["22:00-06:00"]);
        assert_eq!(late_friday.min, 4);
        let early_saturday = effective(&a, at("2026-12-05T05:59:00Z"));
        assert_eq!(early_saturday.min, 4, "still Friday's window");
        assert_eq!(early_saturday.next_change, Some(at("2026-12-05T06:00:00Z")));
        assert!(effective(&a, at("2026-12-05T06:00:00Z")).active.is_empty());
        // Saturday night is not a Friday.
        assert!(effective(&a, at("2026-12-05T23:00:00Z")).active.is_empty());
        // Thursday's early hours belong to no window (Wednesday is not listed).
        assert!(effective(&a, at("2026-12-03T03:00:00Z")).active.is_empty());
    }

    #[test]
    fn overlapping_windows_take_the_highest_values() {
        let a = auto(
            r#"
minRunners: 2
maxRunners: 100
idleRunners: 1
schedules:
  - { name: day, start: "06:00", end: "20:00", minRunners: 10, idleRunners: 2 }
  - { name: peak, start: "09:00", end: "11:00", minRunners: 5, idleRunners: 8 }
  - { name: idle-only, start: "10:00", end: "10:30", idleRunners: 4 }
"#,
        );
        let e = effective(&a, at("2026-12-01T10:15:00Z"));
        assert_eq!(e.active, ["day", "peak", "idle-only"]);
        assert_eq!((e.min, e.idle), (10, 8));
        assert_eq!(e.next_change, Some(at("2026-12-01T10:30:00Z")));
        // A window never lowers the pool's own values.
        let low = auto(
            r#"
minRunners: 6
maxRunners: 100
idleRunners: 3
schedules: [{ start: "00:00", end: "23:59", minRunners: 1, idleRunners: 0 }]
"#,
        );
        let e = effective(&low, at("2026-12-01T12:00:00Z"));
        assert_eq!((e.min, e.idle), (6, 3));
    }

    #[test]
    fn daylight_saving_time_moves_the_window_in_utc() {
        let a = auto(
            r#"
maxRunners: 10
schedules: [{ start: "08:00", end: "09:00", timeZone: America/New_York, minRunners: 1 }]
"#,
        );
        // New York: UTC-4 in summer, UTC-5 in winter (change on 2026-11-01).
        assert_eq!(
            effective(&a, at("2026-10-30T12:30:00Z")).active.len(),
            1,
            "08:30 EDT"
        );
        assert!(
            effective(&a, at("2026-10-30T13:30:00Z")).active.is_empty(),
            "09:30 EDT"
        );
        assert_eq!(
            effective(&a, at("2026-11-02T12:30:00Z")).min,
            0,
            "07:30 EST"
        );
        assert_eq!(
            effective(&a, at("2026-11-02T13:30:00Z")).min,
            1,
            "08:30 EST"
        );
        // Across the change the next opening is computed in local time.
        assert_eq!(
            effective(&a, at("2026-10-31T13:00:00Z")).next_change,
            Some(at("2026-11-01T13:00:00Z")),
            "Sunday 08:00 EST, the day the clocks went back"
        );
    }

    #[test]
    fn a_start_inside_the_spring_gap_is_shifted_by_the_gap() {
        // Berlin skips 02:00-03:00 on 2026-03-29: 02:30 does not exist that day.
        let a = auto(
            r#"
maxRunners: 10
schedules: [{ start: "02:30", end: "04:00", timeZone: Europe/Berlin, minRunners: 2 }]
"#,
        );
        let e = effective(&a, at("2026-03-29T00:00:00Z"));
        // Shifted forward by the gap: 03:30 CEST = 01:30Z, closing 04:00
        // CEST = 02:00Z.
        assert_eq!(e.next_change, Some(at("2026-03-29T01:30:00Z")));
        assert_eq!(effective(&a, at("2026-03-29T01:29:00Z")).min, 0);
        assert_eq!(effective(&a, at("2026-03-29T01:45:00Z")).min, 2);
        // The next day it opens at 02:30 CEST as usual.
        assert_eq!(
            effective(&a, at("2026-03-29T02:00:00Z")).next_change,
            Some(at("2026-03-30T00:30:00Z"))
        );
    }

    #[test]
    fn unknown_time_zones_are_reported_and_ignored() {
        let a = auto(
            r#"
minRunners: 1
maxRunners: 10
schedules:
  - { name: mars, start: "00:00", end: "23:00", timeZone: Mars/Olympus_Mons, minRunners: 9 }
  - { start: "00:00", end: "23:00", timeZone: Asia/Tokyo, minRunners: 3 }
"#,
        );
        let e = effective(&a, at("2026-12-01T12:00:00Z"));
        assert_eq!(e.min, 3, "the valid window still counts");
        assert_eq!(e.invalid.len(), 1);
        let problem = e.problem().unwrap();
        assert!(
            problem.contains("mars") && problem.contains("Mars/Olympus_Mons"),
            "{problem}"
        );
    }

    #[test]
    fn the_tz_database_is_compiled_in() {
        // The image has no /usr/share/zoneinfo: zones must resolve without it.
        for zone in [
            "Europe/Berlin",
            "America/Sao_Paulo",
            "Australia/Lord_Howe",
            "UTC",
        ] {
            assert!(TimeZone::get(zone).is_ok(), "{zone}");
        }
    }

    #[test]
    fn bad_times_are_refused() {
        for bad in ["24:00", "7:30", "07:60", "0730", "ab:cd"] {
            assert!(parse_hh_mm(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_hh_mm("23:59").unwrap(),
            Time::new(23, 59, 0, 0).unwrap()
        );
    }
}
