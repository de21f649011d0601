//! The checks serde cannot make: references, expectations that fit their step, regexes.

use std::collections::BTreeMap;

use crate::load::{Problem, suggest};
use crate::{Action, ActionKind, ExpectKind, Expectation, Scenario};

/// Whether an expectation can be judged after a step of this kind.
pub fn applies(expect: ExpectKind, action: &Action) -> bool {
    use ActionKind as A;
    use ExpectKind as E;
    let kind = action.kind();
    match expect {
        E::Unlocked | E::Sealed => kind == A::Boot,
        E::LoginGranted | E::LoginDenied | E::PromptsSeen | E::ExchangesIdentical => {
            matches!(kind, A::SshLogin | A::ConsoleLogin)
        }
        E::StdoutRegex => matches!(kind, A::SshLogin | A::MaintenanceExec),
        E::NoKeyMaterial | E::KeyExfiltrated => kind == A::ScanCard,
        E::PoweredOff | E::ConsoleRegex | E::NoShell => action.subject().is_some(),
        E::TokenNotAsked => true,
    }
}

/// Where a name is first written as a string in the file (for references outside steps).
fn find_string(text: &str, name: &str) -> std::ops::Range<usize> {
    let quoted = format!("\"{name}\"");
    text.find(&quoted)
        .map(|i| i..i + quoted.len())
        .unwrap_or(0..0)
}

/// Every problem with a parsed scenario, in file order.
pub(crate) fn check(scenario: &Scenario, text: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    let boards: Vec<&str> = scenario.boards.keys().map(String::as_str).collect();
    let tokens: Vec<&str> = scenario.tokens.keys().map(String::as_str).collect();
    if boards.is_empty() {
        problems.push(Problem::new(
            0..0,
            "no boards: declare at least one [boards.NAME]",
        ));
    }
    if scenario.steps.is_empty() {
        problems.push(Problem::new(
            0..0,
            "no steps: add [[steps]] with do = \"…\"",
        ));
    }
    for (token, spec) in &scenario.tokens {
        for board in &spec.enrolled_on {
            if !scenario.boards.contains_key(board) {
                let help =
                    suggest(board, boards.iter().copied()).map(|b| format!("did you mean `{b}`?"));
                problems.push(Problem {
                    span: find_string(text, board),
                    message: format!("token `{token}` is enrolled on undefined board `{board}`"),
                    help,
                });
            }
        }
    }
    let undefined = |what: &str, name: &str, known: &[&str], span| {
        let help = match suggest(name, known.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None if known.is_empty() => format!("declare it: [{what}s.{name}]"),
            None => format!("defined {what}s: {}", known.join(", ")),
        };
        Problem {
            span,
            message: format!("undefined {what} `{name}`"),
            help: Some(help),
        }
    };
    let mut ids: BTreeMap<&str, &Action> = BTreeMap::new();
    for step in &scenario.steps {
        let spans = &step.spans;
        let at = |field: &str| spans.value(field).unwrap_or(0..0);
        for (field, board) in step.action.boards() {
            if !scenario.boards.contains_key(board) {
                problems.push(undefined("board", board, &boards, at(field)));
            }
        }
        for (field, token) in step.action.tokens() {
            if !scenario.tokens.contains_key(token) {
                problems.push(undefined("token", token, &tokens, at(field)));
            }
        }
        problems.extend(check_action(scenario, &step.action, &at));
        for expect in &step.expect {
            if !applies(expect.kind(), &step.action) {
                problems.push(Problem {
                    span: at("expect"),
                    message: format!(
                        "`{}` cannot be judged after `{}`",
                        expect.kind(),
                        step.action.kind()
                    ),
                    help: Some(applicable_help(expect.kind())),
                });
            }
            for pattern in expect.patterns() {
                if let Err(e) = regex::Regex::new(pattern) {
                    problems.push(Problem::new(
                        at("expect"),
                        &format!("invalid regex /{pattern}/: {e}"),
                    ));
                }
            }
            if let Expectation::TokenNotAsked(token) = expect
                && !scenario.tokens.contains_key(token)
            {
                problems.push(undefined("token", token, &tokens, at("expect")));
            }
            if let Expectation::ExchangesIdentical { with } = expect {
                match ids.get(with.as_str()) {
                    Some(other)
                        if matches!(
                            other.kind(),
                            ActionKind::SshLogin | ActionKind::ConsoleLogin
                        ) => {}
                    Some(other) => problems.push(Problem::new(
                        at("expect"),
                        &format!("step `{with}` is a `{}`, not a login", other.kind()),
                    )),
                    None => {
                        let known: Vec<&str> = ids.keys().copied().collect();
                        let help = suggest(with, known.iter().copied())
                            .map(|b| format!("did you mean `{b}`?"))
                            .unwrap_or_else(|| {
                                "give an earlier login step `id = \"…\"` and name it here".into()
                            });
                        problems.push(Problem {
                            span: at("expect"),
                            message: format!("no earlier step has id `{with}`"),
                            help: Some(help),
                        });
                    }
                }
            }
        }
        if let Some(id) = &step.id
            && ids.insert(id, &step.action).is_some()
        {
            problems.push(Problem::new(at("id"), &format!("two steps have id `{id}`")));
        }
    }
    problems.sort_by_key(|p| p.span.start);
    problems
}

fn applicable_help(kind: ExpectKind) -> String {
    use ExpectKind as E;
    let steps = match kind {
        E::Unlocked | E::Sealed => "boot",
        E::LoginGranted | E::LoginDenied | E::PromptsSeen | E::ExchangesIdentical => {
            "ssh-login, console-login"
        }
        E::StdoutRegex => "ssh-login, maintenance-exec",
        E::NoKeyMaterial | E::KeyExfiltrated => "scan-card",
        E::PoweredOff | E::ConsoleRegex | E::NoShell => {
            return format!("`{kind}` fits any step about a board (not wait or token-only steps)");
        }
        E::TokenNotAsked => return format!("`{kind}` fits any step"),
    };
    format!("`{kind}` fits: {steps}")
}

fn check_action(
    scenario: &Scenario,
    action: &Action,
    at: &dyn Fn(&str) -> std::ops::Range<usize>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    // A board has a module if it is declared with one or one is moved onto it by some step.
    let has_zymkey = |b: &str| {
        scenario
            .boards
            .get(b)
            .is_none_or(|spec| spec.zymkey.is_some())
            || scenario
                .steps
                .iter()
                .any(|s| matches!(&s.action, Action::ZymkeyMove { to, .. } if to == b))
    };
    match action {
        Action::MoveCard { from, to }
        | Action::CopyCard { from, to }
        | Action::ZymkeyMove { from, to }
            if from == to =>
        {
            problems.push(Problem::new(
                at("to"),
                &format!("`from` and `to` are both `{to}`"),
            ));
        }
        Action::ConsoleExpect { pattern, .. } => {
            if let Err(e) = regex::Regex::new(pattern) {
                problems.push(Problem::new(
                    at("pattern"),
                    &format!("invalid regex /{pattern}/: {e}"),
                ));
            }
        }
        Action::ZymkeyFault {
            fault: crate::ZymkeyFault::Fail { code, .. },
            ..
        } if *code >= 0 => {
            problems.push(Problem::new(
                at("fault"),
                &format!("a failing call returns a negative code, not {code}"),
            ));
        }
        Action::VendorSignBoot { board }
            if scenario
                .boards
                .get(board)
                .is_some_and(|spec| !spec.signed_boot) =>
        {
            problems.push(Problem {
                span: at("board"),
                message: format!("board `{board}` does not use signed boot"),
                help: Some(format!("declare it: [boards.{board}] signed-boot = true")),
            });
        }
        Action::TokenClone { token, into } if token == into => {
            problems.push(Problem::new(
                at("into"),
                "a token cannot be cloned into itself",
            ));
        }
        _ => {}
    }
    let needs_module = match action {
        Action::ZymkeyCutTab { board }
        | Action::ZymkeyBreach { board, .. }
        | Action::ZymkeyFault { board, .. }
        | Action::ZymkeySpoof { board, .. }
        | Action::ZymkeyAttach { board }
        | Action::ZymkeySniff { board }
        | Action::ZymkeyDetach { board } => Some(("board", board)),
        Action::ZymkeyMove { from, .. } => Some(("from", from)),
        _ => None,
    };
    if let Some((field, board)) = needs_module
        && !has_zymkey(board)
    {
        problems.push(Problem {
            span: at(field),
            message: format!("board `{board}` has no Zymkey"),
            help: Some(format!("declare one: [boards.{board}] zymkey = {{}}")),
        });
    }
    problems
}
