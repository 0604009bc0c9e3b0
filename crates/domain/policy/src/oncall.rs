//! The on-call schedule (`oncall.toml`): who is on call for which group, when. Cedar
//! conditions read it as `context.on_call`, the groups the principal is on call for now.

use crate::workflow::PolicyError;
use jitgate_core::Timestamp;
use serde::Deserialize;

pub const ONCALL_FILE: &str = "oncall.toml";

#[derive(Debug, Clone, Default)]
pub struct Schedule {
    shifts: Vec<Shift>,
}

#[derive(Debug, Clone)]
struct Shift {
    group: String,
    principal: String,
    start: Timestamp,
    end: Timestamp,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    #[serde(default)]
    shift: Vec<toml::Spanned<ShiftSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShiftSpec {
    group: String,
    principal: String,
    start: String,
    end: String,
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, Vec<PolicyError>> {
        let error = |line: usize, message: String| PolicyError {
            file: ONCALL_FILE.into(),
            line,
            message,
        };
        let file: ScheduleFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            vec![error(line, e.message().to_string())]
        })?;
        let mut errors = Vec::new();
        let mut shifts = Vec::new();
        for spanned in &file.shift {
            let line = text[..spanned.span().start.min(text.len())].matches('\n').count() + 1;
            let spec = spanned.get_ref();
            let time = |field: &str, value: &str| {
                chrono::DateTime::parse_from_rfc3339(value)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(|_| {
                        error(
                            line,
                            format!("{field}: '{value}' is not an RFC 3339 time like 2026-01-31T09:00:00Z"),
                        )
                    })
            };
            match (time("start", &spec.start), time("end", &spec.end)) {
                (Ok(start), Ok(end)) if start < end => shifts.push(Shift {
                    group: spec.group.clone(),
                    principal: spec.principal.clone(),
                    start,
                    end,
                }),
                (Ok(_), Ok(_)) => errors.push(error(line, "end must be after start".into())),
                (a, b) => errors.extend(a.err().into_iter().chain(b.err())),
            }
        }
        if errors.is_empty() {
            Ok(Schedule { shifts })
        } else {
            Err(errors)
        }
    }

    /// The groups `principal` is on call for at `now`.
    pub fn on_call(&self, principal: &str, now: Timestamp) -> Vec<String> {
        self.shifts
            .iter()
            .filter(|s| s.principal == principal && s.start <= now && now < s.end)
            .map(|s| s.group.clone())
            .collect()
    }

    pub fn shifts(&self) -> impl Iterator<Item = (&str, &str)> {
        self.shifts.iter().map(|s| (s.group.as_str(), s.principal.as_str()))
    }
}
