//! Keyed state: which events a publisher keys, which ones remove their key,
//! and how many keys a type keeps, for how long.
//!
//! The latest event per key of a type is kept beside the history (by the
//! publish script, atomically with the event's history entry), so a
//! dashboard opening with `?state=1` gets the current state and then the
//! live stream from the same position. A publisher decides an event's key
//! ([`Keying::key_for`]): from the fields configured for its type
//! (`STATE_KEYS`), or given explicitly. A tombstone (`STATE_TOMBSTONES`, or
//! given explicitly) removes the key. Both travel in the envelope, after the
//! type: `{"type":"alert","key":"a-17","removed":true,"data":…}`.
//!
//! Pure: the Rust crate, `/api/publish` and (by its own copy, checked by a
//! test) the Python package apply exactly these rules.

use serde_json::Value;
use serde_json::value::RawValue;
use thiserror::Error;

/// `STATE_KEYS` unless configured: TutorMax's types, keyed the way its
/// dashboard merges them.
pub const DEFAULT_STATE_KEYS: &str = "metrics_update=tutor_id+window,alert=id,intervention=id";
/// `STATE_TOMBSTONES` unless configured: a resolved alert and a completed
/// intervention are no longer current.
pub const DEFAULT_STATE_TOMBSTONES: &str = "alert=status:resolved,intervention=status:completed";
/// `STATE_MAX_KEYS` unless configured: keys kept per type. At the bound the
/// least recently updated key makes room.
pub const DEFAULT_STATE_MAX_KEYS: usize = 100_000;
/// `STATE_TTL_SECS` unless configured: a key not updated for a week leaves
/// the state (0: no age limit).
pub const DEFAULT_STATE_TTL_SECS: u64 = 7 * 24 * 3600;
/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// The most an event's `"evicted"` list may hold, in bytes of its keys as
/// JSON strings (publish.lua's `MAX_EVICTED_BYTES`): keys past it are
/// evicted by the type's next events. Nodes accept an event grown by this
/// much over `MAX_EVENT_BYTES`, so a keyed event within the limit is never
/// dropped for what the script added to it.
pub const MAX_EVICTED_BYTES: usize = 2048;
/// What joins the values of a key made of several fields.
const JOIN: char = '|';

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("a state key is empty")]
    Empty,
    #[error("a state key is longer than {MAX_KEY_BYTES} bytes")]
    TooLong,
    #[error("a state key may not contain control characters")]
    ControlCharacter,
    #[error("a removal needs a key (none given, and none derived from the data)")]
    RemovalWithoutKey,
}

/// Checks an explicit key: 1 to [`MAX_KEY_BYTES`] bytes, no control
/// characters (below U+0020).
pub fn validate_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong);
    }
    // C0 controls only (the Python package checks the same).
    if key.chars().any(|c| c < '\u{20}') {
        return Err(KeyError::ControlCharacter);
    }
    Ok(())
}

/// A `STATE_KEYS` or `STATE_TOMBSTONES` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct RuleError(String);

/// An event's place in the state: its key, and whether it removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed {
    pub key: String,
    pub removed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Tombstone {
    kind: String,
    field: String,
    value: String,
}

/// The rules a publisher keys events by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keying {
    /// Per type, the fields its key is made of.
    keys: Vec<(String, Vec<String>)>,
    tombstones: Vec<Tombstone>,
}

impl Default for Keying {
    fn default() -> Self {
        Self::parse(DEFAULT_STATE_KEYS, DEFAULT_STATE_TOMBSTONES).expect("the defaults parse")
    }
}

/// `none` or nothing at all: no rules.
fn items(spec: &str) -> impl Iterator<Item = &str> {
    let spec = spec.trim();
    let none = spec.is_empty() || spec.eq_ignore_ascii_case("none");
    spec.split(',')
        .map(str::trim)
        .filter(move |item| !none && !item.is_empty())
}

impl Keying {
    /// No event keyed.
    pub fn none() -> Self {
        Self {
            keys: Vec::new(),
            tombstones: Vec::new(),
        }
    }

    /// Parses `STATE_KEYS` (`type=field[+field…]`, comma separated) and
    /// `STATE_TOMBSTONES` (`type=field:value`, comma separated); `none` or
    /// empty for no rules.
    pub fn parse(keys: &str, tombstones: &str) -> Result<Self, RuleError> {
        let mut keying = Self::none();
        for item in items(keys) {
            let (kind, fields) = item.split_once('=').ok_or_else(|| {
                RuleError(format!("STATE_KEYS: {item:?} is not type=field[+field...]"))
            })?;
            let kind = checked_kind(kind, "STATE_KEYS")?;
            let fields: Vec<String> = fields.split('+').map(|f| f.trim().to_owned()).collect();
            if fields.iter().any(String::is_empty) {
                return Err(RuleError(format!(
                    "STATE_KEYS: {item:?} names an empty field"
                )));
            }
            if keying.keys.iter().any(|(k, _)| *k == kind) {
                return Err(RuleError(format!("STATE_KEYS: {kind:?} is keyed twice")));
            }
            keying.keys.push((kind, fields));
        }
        for item in items(tombstones) {
            let parsed = item.split_once('=').and_then(|(kind, rule)| {
                let (field, value) = rule.split_once(':')?;
                Some((kind, field.trim(), value.trim()))
            });
            let Some((kind, field, value)) = parsed.filter(|(_, f, _)| !f.is_empty()) else {
                return Err(RuleError(format!(
                    "STATE_TOMBSTONES: {item:?} is not type=field:value"
                )));
            };
            keying.tombstones.push(Tombstone {
                kind: checked_kind(kind, "STATE_TOMBSTONES")?,
                field: field.to_owned(),
                value: value.to_owned(),
            });
        }
        Ok(keying)
    }

    /// Whether any type is keyed (by fields) or has tombstones.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.tombstones.is_empty()
    }

    /// The key and removal of an event of `kind` with `data`: the explicit
    /// `key` (checked) if given, else the one its type's fields make (none
    /// when a field is missing or not a scalar: the event is then published
    /// unkeyed, never refused). `removed` (explicit) or a tombstone rule
    /// makes it a removal, which needs a key.
    pub fn key_for(
        &self,
        kind: &str,
        data: &RawValue,
        key: Option<&str>,
        removed: bool,
    ) -> Result<Option<Keyed>, KeyError> {
        let fields = self.keys.iter().find(|(k, _)| k == kind).map(|(_, f)| f);
        let rules = self.tombstones.iter().any(|t| t.kind == kind);
        // `data` is parsed only for a type that has rules.
        let value: Option<Value> = (fields.is_some() && key.is_none() || rules)
            .then(|| serde_json::from_str(data.get()).ok())
            .flatten();
        let key = match key {
            Some(key) => {
                validate_key(key)?;
                Some(key.to_owned())
            }
            None => fields
                .zip(value.as_ref())
                .and_then(|(fields, value)| derive(fields, value))
                .filter(|key| validate_key(key).is_ok()),
        };
        let tombstone = value.as_ref().is_some_and(|value| {
            self.tombstones
                .iter()
                .any(|t| t.kind == kind && matches(value.get(&t.field), &t.value))
        });
        match key {
            Some(key) => Ok(Some(Keyed {
                key,
                removed: removed || tombstone,
            })),
            // Asked to remove, with nothing to remove: the caller's mistake.
            // A tombstone rule matching an event without a key leaves it
            // unkeyed instead.
            None if removed => Err(KeyError::RemovalWithoutKey),
            None => Ok(None),
        }
    }
}

fn checked_kind(kind: &str, what: &str) -> Result<String, RuleError> {
    let kind = kind.trim();
    crate::validate_kind(kind).map_err(|e| RuleError(format!("{what}: {e}")))?;
    Ok(kind.to_owned())
}

/// A scalar's text: a string as it is, a number or boolean as JSON writes it.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn derive(fields: &[String], data: &Value) -> Option<String> {
    let values = fields
        .iter()
        .map(|field| data.get(field).and_then(scalar))
        .collect::<Option<Vec<_>>>()?;
    if let [one] = values.as_slice() {
        return Some(one.clone());
    }
    let mut key = String::new();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            key.push(JOIN);
        }
        for c in value.chars() {
            if c == '\\' || c == JOIN {
                key.push('\\');
            }
            key.push(c);
        }
    }
    Some(key)
}

fn matches(value: Option<&Value>, expected: &str) -> bool {
    value.and_then(scalar).is_some_and(|text| text == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publish_script_names_at_most_what_nodes_accept() {
        let script = include_str!("../../publisher/lua/publish.lua");
        assert!(
            script.contains(&format!("local MAX_EVICTED_BYTES = {MAX_EVICTED_BYTES}\n")),
            "publish.lua's MAX_EVICTED_BYTES is shared::state's"
        );
    }

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    fn key(kind: &str, data: &str) -> Option<Keyed> {
        Keying::default()
            .key_for(kind, &raw(data), None, false)
            .unwrap()
    }

    #[test]
    fn tutormax_types_are_keyed_the_way_its_dashboard_merges_them() {
        assert_eq!(
            key(
                "metrics_update",
                r#"{"tutor_id":"t-1","window":"7day","x":1}"#
            ),
            Some(Keyed {
                key: "t-1|7day".into(),
                removed: false
            })
        );
        assert_eq!(key("alert", r#"{"id":17}"#).unwrap().key, "17");
        assert_eq!(key("intervention", r#"{"id":"i-1"}"#).unwrap().key, "i-1");
        assert_eq!(key("analytics_update", r#"{"id":"x"}"#), None);
        assert_eq!(key("test_message", r#"{"id":"x"}"#), None);
    }

    #[test]
    fn values_holding_the_separator_cannot_collide() {
        let a = key("metrics_update", r#"{"tutor_id":"a|b","window":"c"}"#).unwrap();
        let b = key("metrics_update", r#"{"tutor_id":"a","window":"b|c"}"#).unwrap();
        assert_eq!(a.key, r"a\|b|c");
        assert_eq!(b.key, r"a|b\|c");
        let c = key("metrics_update", r#"{"tutor_id":"a\\","window":"c"}"#).unwrap();
        assert_eq!(c.key, r"a\\|c");
    }

    #[test]
    fn an_event_without_its_key_fields_is_published_unkeyed() {
        assert_eq!(key("metrics_update", r#"{"tutor_id":"t-1"}"#), None);
        assert_eq!(key("alert", r#"{"id":{"nested":1}}"#), None);
        assert_eq!(key("alert", r#"[1,2]"#), None);
        assert_eq!(key("alert", r#"{"id":""}"#), None);
        // A resolved alert with no id is no removal of anything: unkeyed.
        assert_eq!(key("alert", r#"{"status":"resolved"}"#), None);
    }

    #[test]
    fn tombstones_match_strings_and_scalars() {
        assert!(
            key("alert", r#"{"id":"a","status":"resolved"}"#)
                .unwrap()
                .removed
        );
        assert!(
            !key("alert", r#"{"id":"a","status":"open"}"#)
                .unwrap()
                .removed
        );
        assert!(
            key("intervention", r#"{"id":"i","status":"completed"}"#)
                .unwrap()
                .removed
        );
        let keying = Keying::parse("alert=id", "alert=resolved:true").unwrap();
        let of = |data: &str| keying.key_for("alert", &raw(data), None, false).unwrap();
        assert!(of(r#"{"id":"a","resolved":true}"#).unwrap().removed);
        assert!(!of(r#"{"id":"a","resolved":"yes"}"#).unwrap().removed);
    }

    #[test]
    fn an_explicit_key_wins_and_is_checked() {
        let keying = Keying::default();
        let data = raw(r#"{"id":"a"}"#);
        let explicit = keying.key_for("alert", &data, Some("mine"), false).unwrap();
        assert_eq!(explicit.unwrap().key, "mine");
        let custom = keying.key_for("custom", &data, Some("k"), true).unwrap();
        assert_eq!(
            custom,
            Some(Keyed {
                key: "k".into(),
                removed: true
            })
        );
        assert_eq!(
            keying.key_for("alert", &data, Some(""), false),
            Err(KeyError::Empty)
        );
        assert_eq!(
            keying.key_for("alert", &data, Some("a\nb"), false),
            Err(KeyError::ControlCharacter)
        );
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(
            keying.key_for("alert", &data, Some(&long), false),
            Err(KeyError::TooLong)
        );
        assert_eq!(
            keying.key_for("custom", &data, None, true),
            Err(KeyError::RemovalWithoutKey)
        );
    }

    #[test]
    fn rules_parse_or_say_why_not() {
        assert!(Keying::parse("none", "").unwrap().is_empty());
        assert!(Keying::parse("", "NONE").unwrap().is_empty());
        let k = Keying::parse(" a = x + y , b=z ", "a=s:done").unwrap();
        assert_eq!(
            k.key_for("a", &raw(r#"{"x":1,"y":2}"#), None, false)
                .unwrap()
                .unwrap()
                .key,
            "1|2"
        );
        for bad in ["a", "a=", "a=x+", "bad type=x", "a=x,a=y", "recovery=x"] {
            let err = Keying::parse(bad, "").unwrap_err();
            assert!(err.to_string().contains("STATE_KEYS"), "{bad}: {err}");
        }
        for bad in ["a", "a=x", "a=:v"] {
            let err = Keying::parse("", bad).unwrap_err();
            assert!(err.to_string().contains("STATE_TOMBSTONES"), "{bad}: {err}");
        }
    }
}
