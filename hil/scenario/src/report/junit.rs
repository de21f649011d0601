//! JUnit XML: one testcase per scenario; a failure's message is the failed expectation, its body
//! adds the last console lines.

use std::fmt::Write;

use super::escape;
use crate::engine::{ScenarioResult, Verdict};

/// The JUnit XML of a run on `target`.
pub fn junit(target: &str, results: &[ScenarioResult]) -> String {
    let count = |f: fn(&Verdict) -> bool| results.iter().filter(|r| f(&r.verdict)).count();
    let failures = count(|v| matches!(v, Verdict::Fail(_)));
    let errors = count(|v| matches!(v, Verdict::Error(_)));
    let skipped = count(|v| matches!(v, Verdict::Skip(_) | Verdict::NotRun(_)));
    let time: f64 = results.iter().map(|r| r.duration.as_secs_f64()).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"keybound scenarios\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\">",
        results.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"scenarios on {}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\">",
        escape(target),
        results.len()
    );
    for r in results {
        let (class, name) = match r.name.rsplit_once('/') {
            Some((dir, base)) => (
                format!("scenarios.{}", dir.replace('/', ".")),
                base.to_string(),
            ),
            None => ("scenarios".to_string(), r.name.clone()),
        };
        let _ = writeln!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\" time=\"{:.3}\">",
            escape(&class),
            escape(&name),
            escape(&r.path.display().to_string()),
            r.duration.as_secs_f64()
        );
        let message = |reason: &str| escape(reason.lines().next().unwrap_or_default());
        match &r.verdict {
            Verdict::Pass => {}
            Verdict::Fail(reason) => {
                let _ = writeln!(
                    out,
                    "      <failure message=\"{}\" type=\"expectation\">{}</failure>",
                    message(reason),
                    escape(&r.failure_message().unwrap_or_default())
                );
            }
            Verdict::Error(reason) => {
                let _ = writeln!(
                    out,
                    "      <error message=\"{}\" type=\"harness\">{}</error>",
                    message(reason),
                    escape(&r.failure_message().unwrap_or_default())
                );
            }
            Verdict::Skip(reason) | Verdict::NotRun(reason) => {
                let _ = writeln!(out, "      <skipped message=\"{}\"/>", message(reason));
            }
        }
        let mut log = String::new();
        for s in &r.steps {
            let _ = writeln!(log, "{:>2}. [{}] {}", s.number, s.verdict.word(), s.text);
            if let Some(reason) = s.verdict.reason() {
                let _ = writeln!(log, "      {reason}");
            }
        }
        for b in &r.boards {
            if let Some(t) = &b.transcript {
                let _ = writeln!(log, "transcript of {}: {}", b.name, t.display());
            }
        }
        let _ = writeln!(out, "      <system-out>{}</system-out>", escape(&log));
        let _ = writeln!(out, "    </testcase>");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
