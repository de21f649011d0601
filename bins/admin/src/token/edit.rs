//! Pure edits of authfile text: add a credential to a user, remove credentials, list entries.
//! Other users' lines, comments and blank lines are kept verbatim; a user's lines are merged into
//! one (the module reads only the last line for a user, so earlier ones were dead anyway).

use pam_keybound::authfile::{self, Credential, UserEntry, format_line};
use pam_keybound::counters::CredentialKey;

/// Errors editing an authfile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EditError {
    /// The user's current line is malformed: refuse to guess.
    #[error("the authfile line of user {user} is malformed ({source}); fix or remove it first")]
    Malformed {
        /// The user.
        user: String,
        /// What is wrong.
        source: authfile::AuthfileError,
    },
    /// No such credential.
    #[error("user {user} has no credential matching `{id}`")]
    NoSuchCredential {
        /// The user.
        user: String,
        /// The id prefix given.
        id: String,
    },
    /// The id prefix matches several credentials.
    #[error("`{0}` matches more than one credential; give more characters")]
    Ambiguous(String),
    /// The user has no line.
    #[error("user {0} has no credentials")]
    NoUser(String),
}

/// A credential's short id as `keybound token list` shows it (16 hex digits of the key's hash).
pub(crate) fn short_id(c: &Credential) -> String {
    CredentialKey::of(&c.public_key).as_str()[..16].to_owned()
}

fn others(text: &str, user: &str) -> Vec<String> {
    text.lines()
        .filter(|l| authfile::line_user(l) != Some(user))
        .map(str::to_owned)
        .collect()
}

fn join(mut lines: Vec<String>, entry: Option<&UserEntry>) -> String {
    if let Some(e) = entry {
        lines.push(format_line(e));
    }
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// `text` with `cred` added to `user` (after the user's existing credentials).
pub(crate) fn add(text: &str, user: &str, cred: Credential) -> Result<String, EditError> {
    let mut entry = authfile::find_user(text, user)
        .map_err(|source| EditError::Malformed {
            user: user.into(),
            source,
        })?
        .unwrap_or_else(|| UserEntry {
            user: user.into(),
            credentials: Vec::new(),
        });
    entry.credentials.push(cred);
    Ok(join(others(text, user), Some(&entry)))
}

/// `text` without `user`'s credential whose short id starts with `id` (or all of them).
/// Returns the new text and the removed credentials.
pub(crate) fn remove(
    text: &str,
    user: &str,
    id: Option<&str>,
) -> Result<(String, Vec<Credential>), EditError> {
    let entry = authfile::find_user(text, user).map_err(|source| EditError::Malformed {
        user: user.into(),
        source,
    });
    let entry = match (entry, id) {
        (Ok(Some(e)), _) => e,
        // A malformed line can still be removed as a whole.
        (Err(_), None) => return Ok((join(others(text, user), None), Vec::new())),
        (Err(e), Some(_)) => return Err(e),
        (Ok(None), _) => return Err(EditError::NoUser(user.into())),
    };
    let Some(id) = id else {
        return Ok((join(others(text, user), None), entry.credentials));
    };
    let id = id.to_ascii_lowercase();
    let (gone, kept): (Vec<Credential>, Vec<Credential>) = entry
        .credentials
        .into_iter()
        .partition(|c| short_id(c).starts_with(&id));
    match gone.len() {
        0 => Err(EditError::NoSuchCredential {
            user: user.into(),
            id,
        }),
        1 => {
            let rest = UserEntry {
                user: user.into(),
                credentials: kept,
            };
            let keep = (!rest.credentials.is_empty()).then_some(&rest);
            Ok((join(others(text, user), keep), gone))
        }
        _ => Err(EditError::Ambiguous(id)),
    }
}

/// Every user's effective entry (last line wins), or the error of a malformed one.
pub(crate) fn list(text: &str) -> Vec<(String, Result<UserEntry, authfile::AuthfileError>)> {
    let mut users: Vec<&str> = Vec::new();
    for l in text.lines() {
        if let Some(u) = authfile::line_user(l)
            && !users.contains(&u)
        {
            users.push(u);
        }
    }
    users
        .into_iter()
        .filter_map(|u| {
            authfile::find_user(text, u)
                .transpose()
                .map(|r| (u.to_owned(), r))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pam_keybound::authfile::{CredentialOptions, KeyHandle, PublicKey};

    fn cred(n: u8) -> Credential {
        Credential {
            key_handle: KeyHandle::Id(vec![n; 16]),
            public_key: PublicKey::EdDsa([n; 32]),
            options: CredentialOptions {
                presence: true,
                ..Default::default()
            },
            old_format: false,
        }
    }

    #[test]
    fn add_merges_the_users_lines_and_keeps_the_rest() {
        let base = add("# keys\nbob:x\n", "alice", cred(1)).unwrap();
        assert!(base.starts_with("# keys\nbob:x\nalice:"));
        let two = add(&base, "alice", cred(2)).unwrap();
        let e = authfile::find_user(&two, "alice").unwrap().unwrap();
        assert_eq!(e.credentials, vec![cred(1), cred(2)]);
        assert_eq!(two.lines().filter(|l| l.starts_with("alice:")).count(), 1);
        assert!(two.contains("bob:x\n"));
        // A malformed line of the user is not silently replaced.
        assert!(matches!(
            add("alice:broken\n", "alice", cred(1)),
            Err(EditError::Malformed { .. })
        ));
    }

    #[test]
    fn remove_one_or_all() {
        let text = add(&add("bob:x\n", "alice", cred(1)).unwrap(), "alice", cred(2)).unwrap();
        let id = short_id(&cred(2));
        let (after, gone) = remove(&text, "alice", Some(&id[..8])).unwrap();
        assert_eq!(gone, vec![cred(2)]);
        assert_eq!(
            authfile::find_user(&after, "alice")
                .unwrap()
                .unwrap()
                .credentials,
            vec![cred(1)]
        );
        let (after, gone) = remove(&after, "alice", None).unwrap();
        assert_eq!(gone, vec![cred(1)]);
        assert_eq!(after, "bob:x\n");
        assert_eq!(
            remove(&after, "alice", None),
            Err(EditError::NoUser("alice".into()))
        );
        assert!(matches!(
            remove(&text, "alice", Some("ffffffffffffffff")),
            Err(EditError::NoSuchCredential { .. })
        ));
        // The last credential removed by id removes the line.
        let one = add("", "carol", cred(3)).unwrap();
        assert_eq!(
            remove(&one, "carol", Some(&short_id(&cred(3)))).unwrap().0,
            ""
        );
        // A malformed line can be removed whole.
        assert_eq!(
            remove("dave:zz\nbob:x\n", "dave", None).unwrap().0,
            "bob:x\n"
        );
    }

    #[test]
    fn list_shows_effective_entries() {
        let text = add("eve:bad\n", "alice", cred(1)).unwrap();
        let l = list(&text);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].0, "eve");
        assert!(l[0].1.is_err());
        assert_eq!(l[1].1.as_ref().unwrap().credentials, vec![cred(1)]);
    }
}
