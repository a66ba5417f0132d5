//! The converted pools made to fit what the CRD accepts (names, labels,
//! schedules), and printed as one YAML stream: each pool with its notes as
//! comments above it, documents separated by `---`.

use crate::crd::{MAX_NAME_PREFIX, MAX_USER_LABELS};

use super::draft::Draft;

/// Longest label value GitHub accepts.
const MAX_LABEL: usize = 256;
const MAX_SCHEDULES: usize = 32;

/// Adjusts `draft` to the CRD's limits, noting each change.
pub fn fit_limits(draft: &mut Draft) {
    let (pool, notes) = (&mut draft.pool, &mut draft.notes);
    let original = pool.metadata.name.clone().unwrap_or_default();
    let name = truncate(&dns_name(&original, true), 63);
    if name != original {
        notes.note(format!("metadata.name: {original:?} became {name:?} (a lowercase DNS name of at most 63 characters)"));
    }
    if name.len() > MAX_NAME_PREFIX || name.contains('.') {
        let prefix = truncate(&dns_name(&name, false), MAX_NAME_PREFIX);
        notes.note(format!(
            "runnerNamePrefix: {prefix} (runner names are the prefix and 11 characters, and the pool's name is too long or has dots)"
        ));
        pool.spec.runner_name_prefix = Some(prefix);
    }
    pool.metadata.name = Some(name);

    let mut labels = Vec::new();
    for label in std::mem::take(&mut pool.spec.labels) {
        if label.is_empty() || label.contains(',') || label.len() > MAX_LABEL {
            notes.not_converted(
                &format!("label {label:?}"),
                "labels are 1 to 256 characters without commas",
            );
        } else if labels.len() == MAX_USER_LABELS {
            notes.not_converted(&format!("label {label:?}"), "a pool has at most 99 labels");
        } else if !labels.contains(&label) {
            labels.push(label);
        }
    }
    pool.spec.labels = labels;

    if pool.spec.github.repository.is_some() && pool.spec.runner_group.take().is_some() {
        notes.not_converted("runner group", "repository runners have no runner groups");
    }
    if let Some(set) = pool.spec.scale_set.as_mut()
        && let Some(name) = set.name.as_mut()
    {
        let valid: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let valid = truncate(valid.trim_start_matches(['.', '_', '-']), 100);
        if valid != *name {
            notes.note(format!(
                "scaleSet.name: {name:?} became {valid:?} (letters, digits, . _ -)"
            ));
            *name = valid;
        }
    }
    if let Some(autoscaling) = pool.spec.autoscaling.as_mut()
        && autoscaling.schedules.len() > MAX_SCHEDULES
    {
        notes.not_converted(
            "scheduled windows after the 32nd",
            "a pool has at most 32 schedules",
        );
        autoscaling.schedules.truncate(MAX_SCHEDULES);
    }
}

/// The YAML stream: `header` lines first, then each pool with its notes.
pub fn render(header: &[String], drafts: &[Draft]) -> Result<String, String> {
    let mut out = String::new();
    for line in header {
        comment(&mut out, line);
    }
    for (i, draft) in drafts.iter().enumerate() {
        if i > 0 || !header.is_empty() {
            out.push_str("---\n");
        }
        comment(&mut out, &format!("From {}", draft.source));
        for line in draft.notes.lines() {
            comment(&mut out, line);
        }
        let yaml = serde_yaml::to_string(&draft.pool)
            .map_err(|e| format!("printing {}: {e}", draft.source))?;
        out.push_str(&quote_yaml11_booleans(&yaml));
    }
    Ok(out)
}

/// Words that YAML 1.1 (kubectl's parser) reads as booleans and YAML 1.2
/// (ours) prints unquoted, e.g. an environment variable's value `on`.
const YAML11_BOOLEANS: [&str; 16] = [
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
    "OFF",
];

/// `yaml` with plain scalars of [`YAML11_BOOLEANS`] quoted, so that they stay
/// strings for kubectl; block scalars (`|`, `>`) are left as they are.
fn quote_yaml11_booleans(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    let mut block: Option<usize> = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        if block.is_some_and(|b| indent > b || line.trim().is_empty()) {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        block = None;
        let (head, value) = match line.rsplit_once(": ") {
            Some((head, value)) => (format!("{head}: "), value),
            None => match line.trim_start().strip_prefix("- ") {
                Some(value) => (format!("{}- ", &line[..indent]), value),
                None => (String::new(), line),
            },
        };
        if !head.is_empty() && YAML11_BOOLEANS.contains(&value) {
            out.push_str(&format!("{head}'{value}'"));
        } else {
            out.push_str(line);
        }
        if [">", "|", ">-", "|-", ">+", "|+"].contains(&value) && !head.is_empty() {
            block = Some(indent);
        }
        out.push('\n');
    }
    out
}

/// `text` as comment lines (a value with a line break stays a comment).
fn comment(out: &mut String, text: &str) {
    for line in text.lines() {
        out.push_str(format!("# {line}").trim_end());
        out.push('\n');
    }
}

/// `name` in lowercase with what a DNS name may not hold turned into dashes;
/// dots too unless `dots`.
pub fn dns_name(name: &str, dots: bool) -> String {
    let name: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || (dots && c == '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if name.is_empty() {
        "runners".to_string()
    } else {
        name.to_string()
    }
}

/// At most `max` characters, not ending in a dash or dot.
fn truncate(name: &str, max: usize) -> String {
    let cut: String = name.chars().take(max).collect();
    cut.trim_end_matches(['-', '.', '_']).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::draft::{Notes, new_pool};
    use crate::crd::GitHubSpec;

    fn draft(name: &str, labels: Vec<String>) -> Draft {
        let github = GitHubSpec {
            organization: Some("acme".into()),
            ..GitHubSpec::default()
        };
        Draft {
            source: "test".into(),
            pool: new_pool(name, None, github, labels, Default::default()).unwrap(),
            notes: Notes::default(),
        }
    }

    #[test]
    fn yaml11_booleans_stay_strings_for_kubectl() {
        let yaml = "env:\n- name: A\n  value: on\n- no\nscript: |\n  value: on\nb: 'yes'\n";
        assert_eq!(
            quote_yaml11_booleans(yaml),
            "env:\n- name: A\n  value: 'on'\n- 'no'\nscript: |\n  value: on\nb: 'yes'\n"
        );
    }

    #[test]
    fn long_names_get_a_runner_name_prefix() {
        let long = "Very.Long_Name".repeat(6);
        let mut d = draft(&long, vec!["a".into()]);
        fit_limits(&mut d);
        let name = d.pool.metadata.name.clone().unwrap();
        assert!(
            name.len() <= 63 && name.starts_with("very.long-name"),
            "{name}"
        );
        let prefix = d.pool.spec.runner_name_prefix.clone().unwrap();
        assert!(
            prefix.len() <= 52 && !prefix.contains('.') && !prefix.ends_with('-'),
            "{prefix}"
        );
    }

    #[test]
    fn labels_beyond_the_limits_are_dropped_with_a_note() {
        let mut labels: Vec<String> = (0..120).map(|i| format!("l{i}")).collect();
        labels.push("a,b".into());
        let mut d = draft("ok", labels);
        fit_limits(&mut d);
        assert_eq!(d.pool.spec.labels.len(), 99);
        assert_eq!(d.notes.lines().len(), 22);
    }
}
