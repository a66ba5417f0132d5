//! A `HorizontalRunnerAutoscaler` as its RunnerDeployment's pool's
//! `spec.autoscaling`: bounds, the scale-down delay, and recurring
//! `scheduledOverrides` as capacity schedules. Demand comes from
//! `workflow_job` webhooks, as with ARC's `scaleUpTriggers`; ARC's polling
//! metrics have no equivalent.

use serde_json::Value;

use crate::crd::{AutoscalingSpec, CapacitySchedule, Weekday};

use super::draft::{Draft, Fields};

const MAX_RUNNERS: i64 = 10000;

/// Sizes `draft`'s pool by the autoscaler `spec` (its scaleTargetRef taken).
pub fn apply_autoscaler(draft: &mut Draft, source: &str, mut spec: Fields) -> Result<(), String> {
    let notes = &mut draft.notes;
    notes.note(format!("autoscaling: from {source}"));
    let min = spec.int("minReplicas")?.unwrap_or(0).clamp(0, MAX_RUNNERS);
    let max = match spec.int("maxReplicas")? {
        Some(max) => max.clamp(0, MAX_RUNNERS),
        None => {
            notes.note("autoscaling: the autoscaler had no maxReplicas; minReplicas (at least 1) was set: pick a real one");
            min.max(1)
        }
    };
    if min > max {
        return Err(format!(
            "{} ({min}) exceeds maxReplicas ({max})",
            spec.path("minReplicas")
        ));
    }
    let mut autoscaling = AutoscalingSpec {
        min_runners: Some(min as i32),
        max_runners: max as i32,
        ..AutoscalingSpec::default()
    };
    if let Some(delay) = spec.int("scaleDownDelaySecondsAfterScaleOut")? {
        autoscaling.scale_down_delay_seconds = Some(delay.clamp(0, 86400) as i32);
    }
    let triggers = spec
        .typed::<Vec<Value>>("scaleUpTriggers")?
        .unwrap_or_default();
    let on_jobs = triggers
        .iter()
        .any(|t| t.pointer("/githubEvent/workflowJob").is_some());
    for (i, trigger) in triggers.iter().enumerate() {
        let path = format!("{}[{i}]", spec.path("scaleUpTriggers"));
        if trigger.pointer("/githubEvent/workflowJob").is_none() {
            notes.not_converted(&path, "only workflowJob events drive demand here");
        } else if trigger.get("duration").is_some() || trigger.get("amount").is_some() {
            notes.not_converted(
                &format!("{path}.amount/duration"),
                "each queued job asks for one runner, for the operator's --webhook-demand-ttl-seconds at most",
            );
        }
    }
    // ARC adds a runner per queued job and keeps none spare; with metrics it kept capacity ahead.
    autoscaling.idle_runners = Some(if on_jobs { 0 } else { 1 });
    if on_jobs {
        notes.note("webhooks: point GitHub's workflow_job webhook at the operator's --webhook-listen (POST /webhook)");
    }
    spec.not_converted(
        "metrics",
        "demand comes from workflow_job webhooks (or scale-set mode), not from polling GitHub; idleRunners keeps spare runners",
        notes,
    );
    spec.not_converted(
        "capacityReservations",
        "no one-off reservations; raise minRunners or add a schedule",
        notes,
    );
    spec.not_converted(
        "githubAPICredentialsFrom",
        "the pool's credentialsSecret serves both",
        notes,
    );
    let overrides = spec
        .typed::<Vec<Value>>("scheduledOverrides")?
        .unwrap_or_default();
    for (i, window) in overrides.iter().enumerate() {
        let path = format!("{}[{i}]", spec.path("scheduledOverrides"));
        match schedule(window) {
            Ok(schedule) => autoscaling.schedules.push(schedule),
            Err(why) => notes.not_converted(&path, &why),
        }
    }
    autoscaling.schedules.iter_mut().for_each(|w| {
        w.min_runners = w.min_runners.map(|m| m.min(max as i32));
    });
    spec.finish(notes);
    draft.pool.spec.replicas = None;
    draft.pool.spec.autoscaling = Some(autoscaling);
    Ok(())
}

/// A daily or weekly override shorter than a day, as a window in UTC.
fn schedule(window: &Value) -> Result<CapacitySchedule, String> {
    let time = |key: &str| -> Result<jiff::Zoned, String> {
        let text = window
            .get(key)
            .and_then(Value::as_str)
            .ok_or(format!("no {key}"))?;
        let at: jiff::Timestamp = text.parse().map_err(|e| format!("{key} {text:?}: {e}"))?;
        Ok(at.to_zoned(jiff::tz::TimeZone::UTC))
    };
    let (start, end) = (time("startTime")?, time("endTime")?);
    let length = end.timestamp().as_second() - start.timestamp().as_second();
    if length <= 0 || length >= 86400 {
        return Err("only windows shorter than a day convert to a schedule".to_string());
    }
    let frequency = window
        .pointer("/recurrenceRule/frequency")
        .and_then(Value::as_str);
    let days = match frequency {
        Some("Daily") => None,
        Some("Weekly") => Some(vec![weekday(start.weekday())]),
        _ => return Err("only Daily and Weekly recurrences convert to a schedule".to_string()),
    };
    if window.pointer("/recurrenceRule/untilTime").is_some() {
        return Err("a schedule has no end date (untilTime)".to_string());
    }
    let hhmm = |t: &jiff::Zoned| format!("{:02}:{:02}", t.hour(), t.minute());
    if hhmm(&start) == hhmm(&end) {
        return Err("shorter than a minute".to_string());
    }
    let min = window
        .get("minReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    Ok(CapacitySchedule {
        start: hhmm(&start),
        end: hhmm(&end),
        days,
        time_zone: Some("UTC".to_string()),
        min_runners: Some(min.clamp(0, MAX_RUNNERS) as i32),
        ..CapacitySchedule::default()
    })
}

fn weekday(day: jiff::civil::Weekday) -> Weekday {
    use jiff::civil::Weekday as W;
    match day {
        W::Monday => Weekday::Mon,
        W::Tuesday => Weekday::Tue,
        W::Wednesday => Weekday::Wed,
        W::Thursday => Weekday::Thu,
        W::Friday => Weekday::Fri,
        W::Saturday => Weekday::Sat,
        W::Sunday => Weekday::Sun,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn weekly_and_daily_overrides_become_windows_in_utc() {
        let weekly = json!({"startTime": "2024-01-06T00:00:00+09:00", "endTime": "2024-01-06T08:30:00+09:00",
            "minReplicas": 2, "recurrenceRule": {"frequency": "Weekly"}});
        let window = schedule(&weekly).unwrap();
        assert_eq!(
            (window.start.as_str(), window.end.as_str()),
            ("15:00", "23:30")
        );
        assert_eq!(window.days, Some(vec![Weekday::Fri]));
        assert_eq!(window.min_runners, Some(2));
        let daily = json!({"startTime": "2024-01-01T22:00:00Z", "endTime": "2024-01-02T06:00:00Z",
            "recurrenceRule": {"frequency": "Daily"}});
        assert_eq!(schedule(&daily).unwrap().days, None);
    }

    #[test]
    fn other_overrides_are_refused_with_a_reason() {
        let long = json!({"startTime": "2024-01-06T00:00:00Z", "endTime": "2024-01-08T00:00:00Z",
            "recurrenceRule": {"frequency": "Weekly"}});
        assert!(schedule(&long).unwrap_err().contains("shorter than a day"));
        let once = json!({"startTime": "2024-01-06T00:00:00Z", "endTime": "2024-01-06T05:00:00Z"});
        assert!(schedule(&once).unwrap_err().contains("Daily and Weekly"));
    }
}
