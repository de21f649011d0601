use super::*;
use proptest::prelude::*;

fn no_conf(_: &Path) -> Result<Option<String>, String> {
    Ok(None)
}

#[test]
fn defaults_match_pam_u2f() {
    let o = Options::parse::<&str>(&[], no_conf).unwrap();
    assert_eq!(o, Options::default());
    assert_eq!(o.max_devices, 24);
    assert_eq!(o.timeout, Duration::from_secs(15));
    assert!(!o.nouserok && !o.cue && !o.expand);
}

#[test]
fn every_supported_option() {
    let args = [
        "authfile=/etc/keybound/u2f_keys",
        "expand",
        "nouserok",
        "cue",
        "cue_prompt=Touch the key now",
        "origin=pam://keybound",
        "appid=pam://old",
        "max_devices=3",
        "userpresence=1",
        "userverification=0",
        "pinverification=-1",
        "debug",
        "debug_file=/var/log/keybound.log",
        "timeout=7",
        "state=/run/counters",
    ];
    let o = Options::parse(&args, no_conf).unwrap();
    assert_eq!(o.authfile.as_deref(), Some("/etc/keybound/u2f_keys"));
    assert!(o.expand && o.nouserok && o.cue && o.debug);
    assert_eq!(o.cue_prompt, "Touch the key now");
    assert_eq!(o.origin.as_deref(), Some("pam://keybound"));
    assert_eq!(o.appid.as_deref(), Some("pam://old"));
    assert_eq!(o.max_devices, 3);
    assert_eq!(o.userpresence, Requirement::On);
    assert_eq!(o.userverification, Requirement::Off);
    assert_eq!(o.pinverification, Requirement::FromCredential);
    assert_eq!(
        o.debug_file,
        DebugSink::File("/var/log/keybound.log".into())
    );
    assert_eq!(o.timeout, Duration::from_secs(7));
    assert_eq!(o.state, PathBuf::from("/run/counters"));
}

#[test]
fn unknown_refused_and_bad_values_fail() {
    for (arg, check) in [
        ("nosuchoption", "unknown"),
        ("authfle=/x", "unknown"),
        ("interactive", "refused"),
        ("manual", "refused"),
        ("alwaysok", "refused"),
        ("nodetect", "refused"),
        ("prompt=Insert", "refused"),
        ("openasuser", "refused"),
        ("cue=1", "shape"),
        ("authfile", "shape"),
        ("timeout", "shape"),
        ("timeout=0", "bad"),
        ("timeout=301", "bad"),
        ("timeout=abc", "bad"),
        ("max_devices=0", "bad"),
        ("userpresence=2", "bad"),
        ("pinverification=yes", "bad"),
        ("debug_file=relative", "bad"),
        ("state=relative", "bad"),
        ("authfile=", "bad"),
        ("conf=relative", "bad"),
    ] {
        let err = Options::parse(&[arg], no_conf).unwrap_err();
        let ok = match check {
            "unknown" => matches!(err, OptionError::Unknown(_)),
            "refused" => matches!(err, OptionError::Refused { .. }),
            "shape" => matches!(err, OptionError::Shape(_)),
            _ => matches!(err, OptionError::BadValue { .. }),
        };
        assert!(ok, "{arg}: {err:?}");
    }
}

#[test]
fn conf_file_then_arguments_win() {
    let read = |p: &Path| {
        assert_eq!(p, Path::new("/etc/k.conf"));
        Ok(Some(
            "# comment\n\ncue\ntimeout=9\norigin=pam://conf\n".to_owned(),
        ))
    };
    let o = Options::parse(&["conf=/etc/k.conf", "origin=pam://arg"], read).unwrap();
    assert!(o.cue);
    assert_eq!(o.timeout, Duration::from_secs(9));
    assert_eq!(o.origin.as_deref(), Some("pam://arg"));
}

#[test]
fn conf_file_errors_fail() {
    // An explicit conf that does not exist, an unsafe one, or a bad line inside it.
    assert!(matches!(
        Options::parse(&["conf=/etc/none"], no_conf),
        Err(OptionError::Conf(_))
    ));
    assert!(matches!(
        Options::parse(&["conf=/etc/k"], |_| Err("world-writable".to_owned())),
        Err(OptionError::Conf(_))
    ));
    assert!(matches!(
        Options::parse(&["conf=/etc/k"], |_| Ok(Some("bogus\n".into()))),
        Err(OptionError::Unknown(_))
    ));
    assert!(matches!(
        Options::parse(&["conf=/etc/k"], |_| Ok(Some("conf=/etc/other\n".into()))),
        Err(OptionError::Conf(_))
    ));
    // The default conf is read when present, and its errors count too.
    assert!(matches!(
        Options::parse::<&str>(&[], |p| {
            assert_eq!(p, Path::new(DEFAULT_CONF));
            Ok(Some("manual\n".into()))
        }),
        Err(OptionError::Refused { .. })
    ));
}

proptest! {
    #[test]
    fn parse_never_panics(args in proptest::collection::vec("\\PC{0,40}", 0..6)) {
        let _ = Options::parse(&args, no_conf);
    }

    #[test]
    fn timeout_round_trips(secs in 1u64..=300) {
        let o = Options::parse(&[format!("timeout={secs}")], no_conf).unwrap();
        prop_assert_eq!(o.timeout, Duration::from_secs(secs));
    }
}
