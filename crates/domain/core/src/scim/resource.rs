//! A user's or group's JSON representation and the records jitgate keeps: what a client
//! writes is cleaned to the published attributes (canonical names, checked types, no control
//! characters), kept as the record's `doc`, and read back as written with what the server
//! owns (`id`, `meta`, `groups`, `members`) added.

use super::error::ScimError;
use super::schema::{self, Attr, Mutability, Type, ENTERPRISE_ATTRS, ENTERPRISE_USER, GROUP_ATTRS, USER_ATTRS};
use super::{ScimGroup, ScimUser};
use crate::Timestamp;
use serde_json::{json, Map, Value};

/// The longest string value kept.
pub const MAX_VALUE_LEN: usize = 1024;
/// The most values a multi-valued attribute (emails) holds.
pub const MAX_VALUES: usize = 32;
/// The most members one write may name.
pub const MAX_MEMBERS: usize = 20_000;

/// The common attribute every resource may carry (RFC 7643 3.1), kept beside the schema's.
const EXTERNAL_ID: &str = "externalId";

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// A checked string: no control characters (NUL included), not too long.
pub fn clean_string(value: &Value, path: &str) -> Result<String, ScimError> {
    let text = value
        .as_str()
        .ok_or_else(|| ScimError::invalid_value(format!("{path} must be a string, not {value}")))?;
    if text.len() > MAX_VALUE_LEN {
        return Err(ScimError::invalid_value(format!(
            "{path} is longer than {MAX_VALUE_LEN} bytes"
        )));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(ScimError::invalid_value(format!(
            "{path} holds the control character U+{:04X}",
            u32::from(c)
        )));
    }
    Ok(text.to_string())
}

/// A boolean, or the strings `"true"` / `"false"` in any case (Entra sends `"False"`).
pub fn clean_bool(value: &Value, path: &str) -> Result<bool, ScimError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(ScimError::invalid_value(format!(
            "{path} must be true or false, not {other}"
        ))),
    }
}

/// One attribute's value, cleaned; `None` when there is nothing to keep (null, empty, or an
/// attribute the server owns, which RFC 7643 says to ignore on input).
pub fn clean_value(attr: &Attr, value: &Value, path: &str) -> Result<Option<Value>, ScimError> {
    if value.is_null() || attr.mutability == Mutability::ReadOnly {
        return Ok(None);
    }
    if attr.multi {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        if items.len() > MAX_VALUES {
            return Err(ScimError::invalid_value(format!(
                "{path} has {} values; at most {MAX_VALUES}",
                items.len()
            )));
        }
        let mut kept = Vec::new();
        for item in items {
            if let Some(v) = clean_single(attr, item, path)? {
                if !kept.contains(&v) {
                    kept.push(v);
                }
            }
        }
        return Ok((!kept.is_empty()).then_some(Value::Array(kept)));
    }
    clean_single(attr, value, path)
}

fn clean_single(attr: &Attr, value: &Value, path: &str) -> Result<Option<Value>, ScimError> {
    Ok(match attr.kind {
        _ if value.is_null() => None,
        Type::String | Type::Reference => Some(Value::String(clean_string(value, path)?)),
        Type::Boolean => Some(Value::Bool(clean_bool(value, path)?)),
        // Entra sends the manager as its id alone (`"value": "ID"`, not `{"value": "ID"}`):
        // a string given for a complex attribute is its `value`.
        Type::Complex if value.is_string() && schema::find(attr.sub, "value").is_some() => {
            let mut object = Map::new();
            object.insert(
                "value".into(),
                Value::String(clean_string(value, &format!("{path}.value"))?),
            );
            Some(Value::Object(object))
        }
        Type::Complex => {
            let object = value
                .as_object()
                .ok_or_else(|| ScimError::invalid_value(format!("{path} must be an object, not {value}")))?;
            let mut kept = Map::new();
            for (key, v) in object {
                if let Some(sub) = schema::find(attr.sub, key) {
                    if let Some(v) = clean_value(sub, v, &format!("{path}.{}", sub.name))? {
                        kept.insert(sub.name.to_string(), v);
                    }
                }
            }
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
    })
}

/// Where a top-level key of a user's JSON goes: the core schema, the enterprise extension
/// (as an object, or one of its attributes written `URN:attr`), `externalId`, or nowhere.
#[derive(Debug, Clone, Copy)]
pub enum UserKey<'a> {
    Core(&'static Attr),
    Extension,
    ExtensionAttr(&'static Attr),
    ExternalId,
    /// `id`, `meta`, `schemas`, `groups` and anything not published: ignored on write.
    Ignored(&'a str),
}

pub fn user_key(key: &str) -> UserKey<'_> {
    if key.eq_ignore_ascii_case(ENTERPRISE_USER) {
        return UserKey::Extension;
    }
    if let Some(rest) = strip_prefix_ci(key, &format!("{ENTERPRISE_USER}:")) {
        return match schema::find(&ENTERPRISE_ATTRS, rest) {
            Some(a) => UserKey::ExtensionAttr(a),
            None => UserKey::Ignored(key),
        };
    }
    let name = strip_prefix_ci(key, &format!("{}:", schema::USER_SCHEMA)).unwrap_or(key);
    if name.eq_ignore_ascii_case(EXTERNAL_ID) {
        return UserKey::ExternalId;
    }
    match schema::find(&USER_ATTRS, name) {
        Some(a) => UserKey::Core(a),
        None => UserKey::Ignored(key),
    }
}

/// A user's JSON as a client wrote it (POST, PUT), cleaned into the document kept.
pub fn clean_user(input: &Value) -> Result<Map<String, Value>, ScimError> {
    let object = input
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the body must be a JSON object"))?;
    let mut doc = Map::new();
    let mut extension = Map::new();
    for (key, value) in object {
        match user_key(key) {
            UserKey::Core(attr) => {
                if let Some(v) = clean_value(attr, value, attr.name)? {
                    doc.insert(attr.name.into(), v);
                }
            }
            UserKey::ExternalId => {
                if !value.is_null() {
                    doc.insert(EXTERNAL_ID.into(), clean_string(value, EXTERNAL_ID)?.into());
                }
            }
            UserKey::Extension => {
                if let Some(object) = value.as_object() {
                    for (k, v) in object {
                        if let Some(attr) = schema::find(&ENTERPRISE_ATTRS, k) {
                            if let Some(v) = clean_value(attr, v, attr.name)? {
                                extension.insert(attr.name.into(), v);
                            }
                        }
                    }
                } else if !value.is_null() {
                    return Err(ScimError::invalid_value(format!("{ENTERPRISE_USER} must be an object")));
                }
            }
            UserKey::ExtensionAttr(attr) => {
                if let Some(v) = clean_value(attr, value, attr.name)? {
                    extension.insert(attr.name.into(), v);
                }
            }
            UserKey::Ignored(_) => {}
        }
    }
    if !extension.is_empty() {
        doc.insert(ENTERPRISE_USER.into(), Value::Object(extension));
    }
    Ok(doc)
}

/// A kept document: the published attributes as the client wrote them.
pub type Doc = Map<String, Value>;

/// A group's JSON as a client wrote it: the document kept (`displayName`, `externalId`) and
/// the member ids, if `members` was given.
pub fn clean_group(input: &Value) -> Result<(Doc, Option<Vec<String>>), ScimError> {
    let object = input
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the body must be a JSON object"))?;
    let mut doc = Map::new();
    let mut members = None;
    for (key, value) in object {
        let name = strip_prefix_ci(key, &format!("{}:", schema::GROUP_SCHEMA)).unwrap_or(key);
        if name.eq_ignore_ascii_case(EXTERNAL_ID) {
            if !value.is_null() {
                doc.insert(EXTERNAL_ID.into(), clean_string(value, EXTERNAL_ID)?.into());
            }
        } else if name.eq_ignore_ascii_case("members") {
            members = Some(member_ids(value)?);
        } else if let Some(attr) = schema::find(&GROUP_ATTRS, name) {
            if let Some(v) = clean_value(attr, value, attr.name)? {
                doc.insert(attr.name.into(), v);
            }
        }
    }
    Ok((doc, members))
}

/// The user ids of a `members` value: an array of `{"value": ID}` (one object alone is taken
/// as a list of one), in order, without repeats.
pub fn member_ids(value: &Value) -> Result<Vec<String>, ScimError> {
    let items: Vec<&Value> = match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    if items.len() > MAX_MEMBERS {
        return Err(ScimError::new(
            400,
            Some(super::ScimType::TooMany),
            format!(
                "members: {} members in one call; send at most {MAX_MEMBERS}",
                items.len()
            ),
        ));
    }
    let mut ids = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for item in items {
        let value = item
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("value")).map(|(_, v)| v))
            .ok_or_else(|| {
                ScimError::invalid_value(format!("members: each member needs a value (a user id), not {item}"))
            })?;
        let id = clean_string(value, "members.value")?;
        if id.is_empty() {
            return Err(ScimError::invalid_value("members.value is empty"));
        }
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// What jitgate reads out of a user's document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFields {
    pub user_name: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    /// `None` when the document does not say.
    pub active: Option<bool>,
    pub manager_id: Option<String>,
    /// The primary email's value, else the first's.
    pub email: Option<String>,
}

fn text(doc: &Map<String, Value>, key: &str) -> Option<String> {
    doc.get(key).and_then(Value::as_str).map(String::from)
}

impl UserFields {
    pub fn of(doc: &Map<String, Value>) -> Result<Self, ScimError> {
        let user_name = text(doc, "userName")
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| ScimError::invalid_value("userName is required"))?;
        let emails = doc.get("emails").and_then(Value::as_array);
        let email = emails
            .and_then(|list| {
                list.iter()
                    .find(|e| e["primary"] == Value::Bool(true))
                    .or_else(|| list.first())
            })
            .and_then(|e| e["value"].as_str())
            .map(String::from);
        let manager_id = doc
            .get(ENTERPRISE_USER)
            .and_then(|e| e.get("manager"))
            .and_then(|m| m.get("value"))
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(String::from);
        Ok(UserFields {
            user_name,
            external_id: text(doc, EXTERNAL_ID),
            display_name: text(doc, "displayName"),
            active: doc.get("active").and_then(Value::as_bool),
            manager_id,
            email,
        })
    }

    /// The principal this user is: `prefix` + the value of `attribute` (`userName`,
    /// `externalId` or `email`), which must be a principal name.
    pub fn principal(&self, attribute: &str, prefix: &str) -> Result<String, ScimError> {
        let value = match attribute {
            "externalId" => self.external_id.as_deref(),
            "email" => self.email.as_deref(),
            _ => Some(self.user_name.as_str()),
        }
        .ok_or_else(|| {
            ScimError::invalid_value(format!(
                "{attribute} is required: this server makes each user's principal from it ([scim] principal_attribute)"
            ))
        })?;
        let principal = format!("{prefix}{value}");
        match crate::principal_name_problem(&principal) {
            None => Ok(principal),
            Some(problem) => Err(ScimError::invalid_value(format!(
                "{attribute} '{}' cannot name a principal: '{}' {problem}",
                value.escape_debug(),
                principal.escape_debug()
            ))),
        }
    }
}

/// The ETag of a version.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Does an `If-Match` header's value (a list of ETags, or `*`) match `version`?
pub fn if_match(header: &str, version: i64) -> bool {
    let wanted = etag(version);
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag == wanted || tag.trim_start_matches("W/") == wanted.trim_start_matches("W/"))
}

fn time(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn meta(kind: &str, location: String, created: Timestamp, modified: Timestamp, version: i64) -> Value {
    json!({
        "resourceType": kind,
        "created": time(created),
        "lastModified": time(modified),
        "location": location,
        "version": etag(version),
    })
}

/// A user as the API answers it; `groups` are (id, name) of the groups they are in, `base`
/// the URL of `/scim/v2`.
pub fn user_json(user: &ScimUser, groups: &[(String, String)], base: &str) -> Value {
    let mut object = user.doc.as_object().cloned().unwrap_or_default();
    let mut schemas = vec![Value::from(schema::USER_SCHEMA)];
    if object.contains_key(ENTERPRISE_USER) {
        schemas.push(ENTERPRISE_USER.into());
    }
    object.insert("schemas".into(), Value::Array(schemas));
    object.insert("id".into(), user.id.clone().into());
    if !groups.is_empty() {
        let list: Vec<Value> = groups
            .iter()
            .map(|(id, name)| json!({"value": id, "$ref": format!("{base}/Groups/{id}"), "display": name}))
            .collect();
        object.insert("groups".into(), Value::Array(list));
    }
    object.insert(
        "meta".into(),
        meta(
            "User",
            format!("{base}/Users/{}", user.id),
            user.created_at,
            user.modified_at,
            user.version,
        ),
    );
    Value::Object(object)
}

/// A group as the API answers it (members as `{value, $ref}` when `with_members`).
pub fn group_json(group: &ScimGroup, base: &str, with_members: bool) -> Value {
    let mut object = group.doc.as_object().cloned().unwrap_or_default();
    object.insert("schemas".into(), json!([schema::GROUP_SCHEMA]));
    object.insert("id".into(), group.id.clone().into());
    object.insert("displayName".into(), group.display_name.clone().into());
    if with_members && !group.members.is_empty() {
        let list: Vec<Value> = group
            .members
            .iter()
            .map(|id| json!({"value": id, "$ref": format!("{base}/Users/{id}"), "type": "User"}))
            .collect();
        object.insert("members".into(), Value::Array(list));
    }
    object.insert(
        "meta".into(),
        meta(
            "Group",
            format!("{base}/Groups/{}", group.id),
            group.created_at,
            group.modified_at,
            group.version,
        ),
    );
    Value::Object(object)
}

/// Parse `attributes` / `excludedAttributes` (comma-separated, RFC 7644 3.4.2.5) into
/// lowercase paths without the core URN.
pub fn attribute_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            let a = strip_prefix_ci(a, &format!("{}:", schema::USER_SCHEMA))
                .or_else(|| strip_prefix_ci(a, &format!("{}:", schema::GROUP_SCHEMA)))
                .unwrap_or(a);
            a.to_ascii_lowercase()
        })
        .collect()
}

/// Keep only `attributes` (plus what is always returned: `id`, `schemas`, `meta`) or drop
/// `excluded`. Names are lowercase paths (`name.givenname`, `members`, or an extension's
/// `urn:…:user:manager`).
pub fn project(resource: &mut Value, attributes: &[String], excluded: &[String]) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    const ALWAYS: [&str; 3] = ["id", "schemas", "meta"];
    let ext = ENTERPRISE_USER.to_ascii_lowercase();
    if !attributes.is_empty() {
        let wanted = |key: &str| {
            let key = key.to_ascii_lowercase();
            ALWAYS.contains(&key.as_str())
                || attributes
                    .iter()
                    .any(|a| a == &key || a.starts_with(&format!("{key}.")) || a.starts_with(&format!("{key}:")))
        };
        object.retain(|key, _| wanted(key));
        // Sub-attributes asked for by name keep only those.
        for (key, value) in object.iter_mut() {
            let k = key.to_ascii_lowercase();
            let subs: Vec<&str> = attributes
                .iter()
                .filter_map(|a| {
                    a.strip_prefix(&format!("{k}."))
                        .or_else(|| a.strip_prefix(&format!("{k}:")))
                })
                .collect();
            let whole = attributes.iter().any(|a| a == &k);
            if whole || subs.is_empty() || ALWAYS.contains(&k.as_str()) {
                continue;
            }
            let keep = |v: &mut Value| {
                if let Some(o) = v.as_object_mut() {
                    o.retain(|sub, _| subs.iter().any(|s| s.eq_ignore_ascii_case(sub)));
                }
            };
            match value {
                Value::Array(items) => items.iter_mut().for_each(keep),
                other => keep(other),
            }
        }
    }
    for name in excluded {
        if ALWAYS.contains(&name.as_str()) {
            continue;
        }
        if let Some(sub) = name.strip_prefix(&format!("{ext}:")) {
            if let Some(e) = object
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case(ENTERPRISE_USER))
                .and_then(|(_, v)| v.as_object_mut())
            {
                e.retain(|k, _| !k.eq_ignore_ascii_case(sub));
            }
            continue;
        }
        match name.split_once('.') {
            None => object.retain(|k, _| !k.eq_ignore_ascii_case(name)),
            Some((parent, sub)) => {
                if let Some((_, v)) = object.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(parent)) {
                    let drop_sub = |v: &mut Value| {
                        if let Some(o) = v.as_object_mut() {
                            o.retain(|k, _| !k.eq_ignore_ascii_case(sub));
                        }
                    };
                    match v {
                        Value::Array(items) => items.iter_mut().for_each(drop_sub),
                        other => drop_sub(other),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::ScimType;

    fn at(s: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(s, 0).unwrap_or_default()
    }

    #[test]
    fn a_user_is_kept_as_written_with_only_what_is_published() {
        let input = json!({
            "schemas": [schema::USER_SCHEMA, ENTERPRISE_USER],
            "id": "client-chosen", "meta": {"version": "x"}, "password": "secret",
            "USERNAME": "alice@example.com",
            "name": {"givenName": "Alice", "middleName": "dropped"},
            "emails": {"value": "alice@example.com", "primary": "True"},
            "active": "false",
            "externalId": "00u1",
            "groups": [{"value": "g"}],
            ENTERPRISE_USER: {"employeeNumber": "7", "manager": {"value": "u-bob", "displayName": "Bob"}, "costCenter": "x"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "SRE",
        });
        let doc = clean_user(&input).unwrap();
        assert_eq!(
            Value::Object(doc.clone()),
            json!({
                "userName": "alice@example.com",
                "name": {"givenName": "Alice"},
                "emails": [{"value": "alice@example.com", "primary": true}],
                "active": false,
                "externalId": "00u1",
                ENTERPRISE_USER: {"employeeNumber": "7", "manager": {"value": "u-bob"}, "department": "SRE"},
            })
        );
        let fields = UserFields::of(&doc).unwrap();
        assert_eq!(fields.user_name, "alice@example.com");
        assert_eq!(fields.email.as_deref(), Some("alice@example.com"));
        assert_eq!(fields.manager_id.as_deref(), Some("u-bob"));
        assert_eq!(fields.principal("userName", "okta:").unwrap(), "okta:alice@example.com");
        assert_eq!(fields.principal("externalId", "").unwrap(), "00u1");
        let user = ScimUser {
            id: "u1".into(),
            user_name: fields.user_name,
            principal: "alice@example.com".into(),
            external_id: fields.external_id,
            display_name: None,
            active: false,
            manager_id: fields.manager_id,
            doc: Value::Object(doc),
            version: 3,
            created_at: at(0),
            modified_at: at(60),
        };
        let out = user_json(&user, &[("g1".into(), "sre".into())], "https://j/scim/v2");
        assert_eq!(out["id"], "u1");
        assert_eq!(out["schemas"], json!([schema::USER_SCHEMA, ENTERPRISE_USER]));
        assert_eq!(out["meta"]["version"], "W/\"3\"");
        assert_eq!(out["meta"]["location"], "https://j/scim/v2/Users/u1");
        assert_eq!(
            out["groups"][0],
            json!({"value": "g1", "$ref": "https://j/scim/v2/Groups/g1", "display": "sre"})
        );
    }

    #[test]
    fn a_user_name_that_is_no_principal_is_an_invalid_value_naming_the_attribute() {
        for name in ["alice smith", "alice\u{200b}", "аlice", "a\u{0}b", "al\tice", "ａlice"] {
            let result =
                clean_user(&json!({"userName": name})).and_then(|doc| UserFields::of(&doc)?.principal("userName", ""));
            let e = result.unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{name:?}");
            assert!(e.detail.contains("userName"), "{}", e.detail);
        }
        assert!(UserFields::of(&clean_user(&json!({"userName": "  "})).unwrap()).is_err());
        assert!(clean_user(&json!({"userName": "a".repeat(MAX_VALUE_LEN + 1)})).is_err());
        assert!(clean_user(&json!({"userName": 7})).is_err());
        assert!(clean_user(&json!("alice")).is_err());
        let e = UserFields::of(&clean_user(&json!({"userName": "a"})).unwrap())
            .unwrap()
            .principal("email", "");
        assert!(e.unwrap_err().detail.contains("email is required"));
    }

    #[test]
    fn groups_keep_their_name_and_members_by_value() {
        let (doc, members) = clean_group(&json!({
            "schemas": [schema::GROUP_SCHEMA], "displayName": "sre", "externalId": "x",
            "members": [{"value": "u1", "display": "Alice"}, {"value": "u2", "type": "User"}, {"value": "u1"}],
        }))
        .unwrap();
        assert_eq!(
            Value::Object(doc.clone()),
            json!({"displayName": "sre", "externalId": "x"})
        );
        assert_eq!(members, Some(vec!["u1".to_string(), "u2".to_string()]));
        let group = ScimGroup {
            id: "g1".into(),
            display_name: "sre".into(),
            external_id: Some("x".into()),
            doc: Value::Object(doc),
            members: vec!["u1".into()],
            version: 1,
            created_at: at(0),
            modified_at: at(0),
        };
        let mut out = group_json(&group, "b", true);
        assert_eq!(
            out["members"],
            json!([{"value": "u1", "$ref": "b/Users/u1", "type": "User"}])
        );
        project(&mut out, &[], &attribute_list("members"));
        assert!(out.get("members").is_none());
        assert_eq!(out["displayName"], "sre");
        let (_, none) = clean_group(&json!({"displayName": "x"})).unwrap();
        assert_eq!(none, None);
        let too_many: Vec<Value> = (0..=MAX_MEMBERS).map(|i| json!({"value": format!("u{i}")})).collect();
        assert_eq!(
            member_ids(&Value::Array(too_many)).unwrap_err().scim_type,
            Some(ScimType::TooMany)
        );
    }

    #[test]
    fn attributes_keep_what_is_asked_and_what_is_always_returned() {
        let mut v = json!({"id": "1", "schemas": [], "meta": {}, "userName": "a", "displayName": "A", "name": {"givenName": "g", "familyName": "f"}, "emails": [{"value": "e", "type": "work"}]});
        project(
            &mut v,
            &attribute_list("userName,name.givenName,urn:ietf:params:scim:schemas:core:2.0:User:emails.value"),
            &[],
        );
        assert_eq!(
            v,
            json!({"id": "1", "schemas": [], "meta": {}, "userName": "a", "name": {"givenName": "g"}, "emails": [{"value": "e"}]})
        );
        let mut v =
            json!({"id": "1", "userName": "a", "displayName": "A", "name": {"givenName": "g", "familyName": "f"}});
        project(&mut v, &[], &attribute_list("displayName,name.familyName,id"));
        assert_eq!(v, json!({"id": "1", "userName": "a", "name": {"givenName": "g"}}));
    }

    #[test]
    fn a_string_for_a_complex_attribute_is_its_value_as_entra_sends_the_manager() {
        let doc = clean_user(&json!({"userName": "a", ENTERPRISE_USER: {"manager": "u-boss"}})).unwrap();
        assert_eq!(doc[ENTERPRISE_USER]["manager"], json!({"value": "u-boss"}));
        assert_eq!(UserFields::of(&doc).unwrap().manager_id.as_deref(), Some("u-boss"));
        assert!(clean_user(&json!({"userName": "a", "name": "Alice"})).is_err());
    }

    #[test]
    fn etags_match_weak_strong_and_star() {
        assert!(if_match("W/\"3\"", 3));
        assert!(if_match("\"3\"", 3));
        assert!(if_match("W/\"1\", W/\"3\"", 3));
        assert!(if_match("*", 9));
        assert!(!if_match("W/\"2\"", 3));
    }
}
