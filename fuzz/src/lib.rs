//! The properties the fuzz targets check. Kept apart from the targets so a
//! stable-toolchain test (`shared/tests/fuzz_corpus.rs`) can replay the
//! committed corpus through exactly the same checks.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use serde_json::Value;
use serde_json::value::RawValue;
use shared::client::{self, ClientCommand};
use shared::{Epoch, EventId, Position, TypeFilter};

/// A payload arriving on a Redis channel (from any publisher, possibly
/// hostile): decoding never panics, and whatever it accepts is a JSON object
/// whose `type` and `timestamp` are what the gateway believes, so a client
/// never receives garbage.
pub fn check_bus_payload(data: &[u8]) {
    let received = Utc.timestamp_millis_opt(1_764_064_800_123).unwrap();
    let Ok(decoded) = shared::envelope::decode(data, received) else {
        return;
    };
    // Grammar, not numeric range: JSON may hold numbers beyond f64 (a browser
    // reads 1E400 as Infinity), and the gateway relays data untouched.
    let object: HashMap<String, Box<RawValue>> =
        serde_json::from_str(&decoded.text).expect("accepted payloads are JSON objects");
    let field = |name: &str| {
        object
            .get(name)
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
    };
    assert_eq!(field("type").as_deref(), Some(decoded.kind.as_str()));
    assert!(shared::validate_kind(&decoded.kind).is_ok());
    assert!(field("timestamp").is_some());
    // Decoding what we would send gives the same event again.
    let again = shared::envelope::decode(decoded.text.as_bytes(), received).expect("stable");
    assert_eq!(again, decoded);
    // The analytics snapshot path reads the same text.
    let _ = shared::envelope::parts(&decoded.text);
    let position = Position::new(Epoch(0x0123abcd), EventId::new(1, 2));
    if let Some(with_id) = shared::insert_id(&decoded.text, position) {
        serde_json::from_str::<HashMap<String, Box<RawValue>>>(&with_id)
            .expect("an id spliced into a valid envelope keeps it valid");
    }
    // Taking an untrusted id out keeps every other member and a valid object.
    let stripped = shared::envelope::strip_id(&decoded.text).expect("an accepted payload strips");
    let members = serde_json::from_str::<HashMap<String, Box<RawValue>>>(&stripped)
        .expect("a stripped envelope stays valid");
    assert!(!members.contains_key("id"));
}

/// What a browser controls: frame text and the `?types=` / `?since=` query
/// values. Never a panic; what parses round-trips.
pub fn check_client_input(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if client::parse_command(&text) == Some(ClientCommand::Ping) {
        assert_eq!(text.trim(), "ping");
    }
    // An auth frame (`?auth=frame`) is an object of type "auth" with that token.
    if let Some(token) = client::parse_auth(&text) {
        let frame: Value = serde_json::from_str(&text).expect("an auth frame is JSON");
        assert_eq!(frame["type"], "auth");
        assert_eq!(frame["token"], Value::String(token));
    }
    if let Ok(filter) = TypeFilter::parse(&text) {
        for kind in text.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            assert!(filter.allows(kind));
        }
    }
    if let Ok(id) = text.parse::<EventId>() {
        assert_eq!(id.to_string().parse::<EventId>().unwrap(), id);
    }
    if let Ok(position) = text.parse::<Position>() {
        assert_eq!(position.to_string().parse::<Position>().unwrap(), position);
    }
    let reply = client::error(client::codes::UNKNOWN_MESSAGE, &text, Utc::now());
    serde_json::from_str::<Value>(&reply)
        .expect("error replies stay valid JSON whatever the input");
}
