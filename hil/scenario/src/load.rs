//! Reading scenario files: TOML → [`Scenario`], then the checks serde cannot make (undefined
//! boards and tokens, expectations that do not fit their step, bad regexes). Every problem is a
//! [`Problem`] at a byte span of the file, rendered as `file:line:col` with a suggestion.

use std::ops::Range;
use std::path::{Path, PathBuf};

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, NamedSource, SourceSpan};

use crate::Scenario;

/// Separates an encoded span from the message (see [`spanned_message`]).
const SPAN_MARK: char = '\u{1f}';
/// Separates a message from its help text.
const HELP_MARK: char = '\u{1e}';

/// Encodes a span into a serde error message: serde errors carry text only, and the position of
/// a field inside a step is known only where the step is read.
pub(crate) fn spanned_message(span: Range<usize>, message: &str) -> String {
    format!("{SPAN_MARK}{}-{}{SPAN_MARK}{message}", span.start, span.end)
}

/// `message` with a "did you mean" help for `word` among `known`.
pub(crate) fn with_suggestion(message: &str, word: &str, known: &[&str]) -> String {
    match suggest(word, known.iter().copied()) {
        Some(best) => format!("{message}{HELP_MARK}did you mean `{best}`?"),
        None => format!("{message}{HELP_MARK}expected one of: {}", known.join(", ")),
    }
}

/// The closest of `known` to `word`, if any is close enough to be what was meant.
pub fn suggest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(word, k), k))
        .filter(|(d, k)| *d <= (k.len().max(word.len()) / 3).max(2) || k.starts_with(word))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// One problem in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Byte range in the file.
    pub span: Range<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it, if we can tell.
    pub help: Option<String>,
}

impl Problem {
    /// A problem at `span`; a help text after [`HELP_MARK`] in `message` is split off.
    pub(crate) fn new(span: Range<usize>, message: &str) -> Self {
        let (message, help) = match message.split_once(HELP_MARK) {
            Some((m, h)) => (m.to_string(), Some(h.to_string())),
            None => (message.to_string(), None),
        };
        let help = help.or_else(|| serde_suggestion(&message));
        // A long "expected one of …" list drowns the message: the help names the likely one.
        let message = match (message.split_once(", expected one of"), &help) {
            (Some((head, list)), Some(_)) if list.matches('`').count() > 16 => head.to_string(),
            _ => message,
        };
        Self {
            span,
            message,
            help,
        }
    }
}

/// "did you mean" for serde's `unknown field`/`unknown variant` messages.
fn serde_suggestion(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (word, rest) = rest.split_once('`')?;
    let expected = rest.split_once("expected")?.1;
    let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    suggest(word, known.iter().copied()).map(|best| format!("did you mean `{best}`?"))
}

/// Everything wrong with one file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}: {} problem(s)", problems.len())]
pub struct ScenarioError {
    /// The file.
    pub path: PathBuf,
    /// Its text.
    pub source_text: String,
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

/// One problem as a miette diagnostic.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct ProblemReport {
    message: String,
    src: NamedSource<String>,
    span: SourceSpan,
    help: Option<String>,
}

impl Diagnostic for ProblemReport {
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(
            miette::LabeledSpan::new_with_span(Some("here".into()), self.span),
        )))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

impl ScenarioError {
    /// `file:line:col: message (help)`, one line per problem.
    pub fn short(&self) -> String {
        self.problems
            .iter()
            .map(|p| {
                let (line, col) = line_col(&self.source_text, p.span.start);
                let help = p
                    .help
                    .as_ref()
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                format!("{}:{line}:{col}: {}{help}", self.path.display(), p.message)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every problem with the file's text around it (miette's graphical report, no colour).
    pub fn render(&self, colour: bool) -> String {
        let theme = if colour {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
        let mut out = String::new();
        for p in &self.problems {
            let (line, col) = line_col(&self.source_text, p.span.start);
            let report = ProblemReport {
                message: format!("{}:{line}:{col}: {}", self.path.display(), p.message),
                src: NamedSource::new(self.path.display().to_string(), self.source_text.clone()),
                span: SourceSpan::from(p.span.start..p.span.end.max(p.span.start)),
                help: p.help.clone(),
            };
            let _ = handler.render_report(&mut out, &report);
        }
        out
    }
}

/// A scenario read and checked, with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedScenario {
    /// The file.
    pub path: PathBuf,
    /// Its name: the path under the scenario root without `.toml` (e.g. `boot/boots-to-login`).
    pub name: String,
    /// The scenario.
    pub scenario: Scenario,
}

/// Parses and checks scenario text; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    let error = |problems| ScenarioError {
        path: path.to_path_buf(),
        source_text: text.to_string(),
        problems,
    };
    let scenario: Scenario = toml::from_str(text).map_err(|e| {
        let message = e.message();
        let problem = match message.strip_prefix(SPAN_MARK).and_then(|m| {
            let (range, rest) = m.split_once(SPAN_MARK)?;
            let (start, end) = range.split_once('-')?;
            Some((start.parse().ok()?..end.parse().ok()?, rest))
        }) {
            Some((span, rest)) => Problem::new(span, rest),
            None => Problem::new(e.span().unwrap_or(0..0), message),
        };
        error(vec![problem])
    })?;
    let problems = crate::validate::check(&scenario, text);
    if problems.is_empty() {
        Ok(scenario)
    } else {
        Err(error(problems))
    }
}

/// Reads and checks one file; `root` is the directory names are relative to.
pub fn load(path: &Path, root: &Path) -> Result<LoadedScenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        path: path.to_path_buf(),
        source_text: String::new(),
        problems: vec![Problem::new(0..0, &format!("cannot read: {e}"))],
    })?;
    let scenario = parse(path, &text)?;
    Ok(LoadedScenario {
        path: path.to_path_buf(),
        name: scenario_name(path, root),
        scenario,
    })
}

/// `boot/boots-to-login` for `ROOT/boot/boots-to-login.toml`.
pub fn scenario_name(path: &Path, root: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.with_extension("").to_string_lossy().replace('\\', "/")
}

/// Every `*.toml` scenario under `paths` (files or directories, walked in sorted order),
/// skipping `schema.json` and the skip allow-list.
pub fn discover(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.extension().is_some_and(|e| e == "toml")
                && p.file_name()
                    .is_some_and(|n| n != crate::allowlist::FILE_NAME)
            {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out)?;
        } else {
            std::fs::metadata(p)?;
            out.push(p.clone());
        }
    }
    Ok(out)
}
