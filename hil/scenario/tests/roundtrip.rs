//! Any valid scenario survives serialisation: to TOML and back through the strict loader.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use scenario::{
    Action, Binding, BoardSpec, CardEdit, Expectation, Presence, Scenario, Step, Timeout,
    TokenFault, TokenSpec, ZymkeyFault, ZymkeySpec,
};

const BOARDS: &[&str] = &["victim", "spare"];

fn board() -> impl Strategy<Value = String> {
    prop::sample::select(BOARDS).prop_map(String::from)
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

fn word() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9.-]{0,12}"
}

fn timeout() -> impl Strategy<Value = Timeout> {
    prop_oneof![
        (0u64..5000).prop_map(|s| Timeout(Duration::from_secs(s))),
        (1u64..5000).prop_map(|ms| Timeout(Duration::from_millis(ms))),
    ]
}

fn fault() -> impl Strategy<Value = ZymkeyFault> {
    prop_oneof![
        (0u32..100, -100i32..0).prop_map(|(count, code)| ZymkeyFault::Fail { count, code }),
        (0u32..100, 0u32..10_000).prop_map(|(count, ms)| ZymkeyFault::Delay { count, ms }),
        (0u32..100).prop_map(|count| ZymkeyFault::BitFlip { count }),
        (0u32..100).prop_map(|count| ZymkeyFault::Drop { count }),
        Just(ZymkeyFault::Crash),
        Just(ZymkeyFault::Clear),
    ]
}

fn two() -> impl Strategy<Value = (String, String)> {
    any::<bool>().prop_map(|flip| {
        let (a, b) = (BOARDS[0].to_string(), BOARDS[1].to_string());
        if flip { (b, a) } else { (a, b) }
    })
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        board().prop_map(|board| Action::Boot { board }),
        board().prop_map(|board| Action::PowerOn { board }),
        board().prop_map(|board| Action::PowerCut { board }),
        board().prop_map(|board| Action::Provision { board }),
        two().prop_map(|(from, to)| Action::MoveCard { from, to }),
        two().prop_map(|(from, to)| Action::ZymkeyMove { from, to }),
        (board(), prop::option::of(word()))
            .prop_map(|(board, shelf)| Action::RemoveCard { board, shelf }),
        (
            board(),
            word(),
            prop_oneof![
                text().prop_map(CardEdit::Append),
                text().prop_map(CardEdit::Content),
                (text(), text()).prop_map(|(a, b)| CardEdit::Replace([a, b])),
            ]
        )
            .prop_map(|(board, file, edit)| Action::EditBootFile { board, file, edit }),
        board().prop_map(|board| Action::ScanCard { board }),
        (board(), 0u8..2).prop_map(|(board, channel)| Action::ZymkeyBreach { board, channel }),
        (board(), fault()).prop_map(|(board, fault)| Action::ZymkeyFault { board, fault }),
        two().prop_map(|(board, like)| Action::ZymkeySpoof { board, like }),
        (
            board(),
            prop::sample::select(vec![Presence::Touch, Presence::Deny, Presence::Timeout])
        )
            .prop_map(|(_, answer)| Action::TokenPresence {
                token: "key".into(),
                answer
            }),
        (board(), text()).prop_map(|(board, text)| Action::ConsoleSend { board, text }),
        (board(), word()).prop_map(|(board, pattern)| Action::ConsoleExpect { board, pattern }),
        (board(), word(), prop::collection::vec(text(), 0..3), text()).prop_map(
            |(board, user, answers, command)| Action::SshLogin {
                board,
                user,
                answers,
                command
            }
        ),
        (board(), word(), text()).prop_map(|(board, user, password)| Action::ConsoleLogin {
            board,
            user,
            password
        }),
        (board(), text()).prop_map(|(board, command)| Action::MaintenanceExec { board, command }),
        timeout().prop_map(|duration| Action::Wait { duration }),
        (
            prop::sample::select(vec![
                TokenFault::Corrupt,
                TokenFault::Oversize,
                TokenFault::Stall,
                TokenFault::Drop,
                TokenFault::WrongRp,
                TokenFault::Clear,
            ]),
            1u32..5
        )
            .prop_map(|(fault, count)| Action::TokenFault {
                token: "key".into(),
                fault,
                count
            }),
        board().prop_map(|board| Action::ZymkeySniff { board }),
        (board(), word()).prop_map(|(board, shelf)| Action::RestoreCard { board, shelf }),
    ]
}

fn expectation() -> impl Strategy<Value = Expectation> {
    prop_oneof![
        Just(Expectation::Unlocked),
        prop::option::of(word()).prop_map(|reason| Expectation::Sealed { reason }),
        Just(Expectation::PoweredOff),
        Just(Expectation::LoginGranted),
        Just(Expectation::LoginDenied),
        prop::collection::vec(word(), 0..3).prop_map(Expectation::PromptsSeen),
        word().prop_map(Expectation::ConsoleRegex),
        word().prop_map(Expectation::StdoutRegex),
        Just(Expectation::NoShell),
        Just(Expectation::NoKeyMaterial),
        Just(Expectation::KeyExfiltrated),
        Just(Expectation::TokenNotAsked("key".into())),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (
        action(),
        prop::collection::vec(expectation(), 0..3),
        prop::option::of(timeout()),
    )
        .prop_map(|(action, expect, timeout)| {
            let mut step = Step::new(action);
            step.expect = expect
                .into_iter()
                .filter(|e| scenario::applies(e.kind(), &step.action))
                .collect();
            step.timeout = timeout;
            step
        })
}

fn spec() -> impl Strategy<Value = BoardSpec> {
    (
        prop::sample::select(vec![Binding::Developer, Binding::Production]),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(Just("ch0=self-destruct".to_string())),
    )
        .prop_map(|(binding, signed_boot, empty, perimeter)| BoardSpec {
            zymkey: Some(ZymkeySpec { binding, perimeter }),
            signed_boot,
            card: if empty {
                scenario::CardSlot::Empty
            } else {
                scenario::CardSlot::Fresh
            },
            ..BoardSpec::default()
        })
}

fn valid_scenario() -> impl Strategy<Value = Scenario> {
    (
        text().prop_filter("a title", |t| !t.is_empty()),
        prop::option::of(text()),
        prop::collection::vec(word(), 0..3),
        prop::option::of(timeout()),
        spec(),
        spec(),
        prop::collection::vec(step(), 1..8),
    )
        .prop_map(|(title, about, tags, timeout, a, b, mut steps)| {
            // Ids on login steps, and one exchange comparison when two logins exist.
            let mut logins = Vec::new();
            for (i, s) in steps.iter_mut().enumerate() {
                if matches!(
                    s.action,
                    Action::SshLogin { .. } | Action::ConsoleLogin { .. }
                ) {
                    let id = format!("login-{i}");
                    if let Some(first) = logins.first() {
                        s.expect.push(Expectation::ExchangesIdentical {
                            with: String::clone(first),
                        });
                    }
                    s.id = Some(id.clone());
                    logins.push(id);
                }
            }
            Scenario {
                title,
                about,
                tags,
                timeout,
                boards: BTreeMap::from([("victim".into(), a), ("spare".into(), b)]),
                tokens: BTreeMap::from([(
                    "key".into(),
                    TokenSpec {
                        enrolled_on: vec!["victim".into()],
                    },
                )]),
                steps,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_valid_scenario_round_trips(original in valid_scenario()) {
        let text = toml::to_string(&original).expect("serialises");
        let back = scenario::parse(Path::new("generated.toml"), &text)
            .map_err(|e| TestCaseError::fail(format!("{}\n{text}", e.short())))?;
        prop_assert_eq!(back, original, "{}", text);
    }
}
