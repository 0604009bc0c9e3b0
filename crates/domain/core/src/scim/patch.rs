//! PATCH (RFC 7644 3.5.2) as Okta and Entra send it: `add`, `remove`, `replace` in any case,
//! a path or none (then the value is an object of paths, dotted ones included:
//! `{"name.givenName": "A"}`), value filters (`emails[type eq "work"].value`,
//! `members[value eq "ID"]`), booleans as strings (`"False"`), enterprise-extension paths
//! (`urn:…:enterprise:2.0:User:manager`). Applied to the kept document; a group's members are
//! collected as an edit, never applied to a full list the server would have to read.

use super::error::ScimError;
use super::resource::{clean_string, clean_user, clean_value, member_ids, MAX_MEMBERS};
use super::schema::{
    self, Attr, Mutability, Type, ENTERPRISE_ATTRS, ENTERPRISE_USER, GROUP_ATTRS, GROUP_SCHEMA, USER_ATTRS, USER_SCHEMA,
};
use super::MemberChange;
use serde_json::{Map, Value};

/// The most operations one PATCH may hold.
pub const MAX_OPERATIONS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Remove,
    Replace,
}

/// One operation of a PatchOp body.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub op: Op,
    pub path: Option<String>,
    pub value: Option<Value>,
}

fn get_ci<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

/// Read a PatchOp body.
pub fn parse(body: &Value) -> Result<Vec<Operation>, ScimError> {
    let object = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the body must be a PatchOp JSON object"))?;
    if let Some(schemas) = get_ci(object, "schemas") {
        let named = schemas.as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(schema::PATCH_OP)))
        });
        if !named {
            return Err(ScimError::invalid_syntax(format!(
                "schemas must be [\"{}\"]",
                schema::PATCH_OP
            )));
        }
    }
    let list = get_ci(object, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("a PatchOp needs Operations, a list"))?;
    if list.len() > MAX_OPERATIONS {
        return Err(ScimError::new(
            400,
            Some(super::ScimType::TooMany),
            format!("{} operations in one PATCH; send at most {MAX_OPERATIONS}", list.len()),
        ));
    }
    list.iter()
        .map(|item| {
            let item = item
                .as_object()
                .ok_or_else(|| ScimError::invalid_syntax("each operation must be an object"))?;
            let op = match get_ci(item, "op")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("add") => Op::Add,
                Some("remove") => Op::Remove,
                Some("replace") => Op::Replace,
                other => {
                    return Err(ScimError::invalid_syntax(format!(
                        "op {} is not add, remove or replace",
                        other.unwrap_or("(missing)")
                    )))
                }
            };
            let path = match get_ci(item, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) if p.trim().is_empty() => None,
                Some(p) => Some(clean_string(p, "path").map_err(|e| ScimError::invalid_path(e.detail))?),
            };
            let value = get_ci(item, "value").filter(|v| !v.is_null()).cloned();
            if op != Op::Remove && value.is_none() {
                return Err(ScimError::invalid_value(format!(
                    "{} {} needs a value",
                    if op == Op::Add { "add" } else { "replace" },
                    path.as_deref().unwrap_or("")
                )));
            }
            if op == Op::Remove && path.is_none() {
                return Err(ScimError::no_target("remove needs a path"));
            }
            Ok(Operation { op, path, value })
        })
        .collect()
}

/// A parsed attribute path: `[URN:]attr[[sub eq "v"]][.sub]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// In the enterprise extension.
    pub extension: bool,
    /// The attribute's name as given (canonical once looked up); empty for the whole
    /// extension (`urn:…:enterprise:2.0:User`).
    pub attr: String,
    /// A value filter: (sub-attribute, value).
    pub filter: Option<(String, String)>,
    pub sub: Option<String>,
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// Parse a path; `core` is the resource's core schema URN.
pub fn parse_path(text: &str, core: &str) -> Result<Path, ScimError> {
    let bad = |why: &str| ScimError::invalid_path(format!("path '{}' {why}", text.escape_debug()));
    let text = text.trim();
    let (extension, rest) = if text.eq_ignore_ascii_case(ENTERPRISE_USER) {
        (true, "")
    } else if let Some(rest) = strip_prefix_ci(text, &format!("{ENTERPRISE_USER}:")) {
        (true, rest)
    } else if let Some(rest) = strip_prefix_ci(text, &format!("{core}:")) {
        (false, rest)
    } else if text.to_ascii_lowercase().starts_with("urn:") {
        return Err(bad("names a schema this server does not publish"));
    } else {
        (false, text)
    };
    if rest.is_empty() {
        return if extension {
            Ok(Path {
                extension,
                attr: String::new(),
                filter: None,
                sub: None,
            })
        } else {
            Err(bad("names no attribute"))
        };
    }
    let (attr, filter, after) = match rest.find('[') {
        Some(open) => {
            let close = rest
                .rfind(']')
                .filter(|c| *c > open)
                .ok_or_else(|| bad("opens '[' without ']'"))?;
            let inner = &rest[open + 1..close];
            let mut words = inner.splitn(3, ' ').map(str::trim);
            let (sub, op, value) = (words.next(), words.next(), words.next());
            let (Some(sub), Some(op), Some(value)) = (sub, op, value) else {
                return Err(ScimError::invalid_filter(format!(
                    "'{inner}': value filters in paths are SUB eq \"VALUE\""
                )));
            };
            if !op.eq_ignore_ascii_case("eq") || sub.contains(' ') {
                return Err(ScimError::invalid_filter(format!(
                    "'{inner}': value filters in paths are SUB eq \"VALUE\""
                )));
            }
            let value: String = serde_json::from_str(value)
                .map_err(|_| ScimError::invalid_filter(format!("'{inner}': the value must be a quoted string")))?;
            (&rest[..open], Some((sub.to_string(), value)), &rest[close + 1..])
        }
        None => match rest.split_once('.') {
            Some((a, s)) => (a, None, &rest[a.len()..][..s.len() + 1]),
            None => (rest, None, ""),
        },
    };
    let sub = match after {
        "" => None,
        s => Some(
            s.strip_prefix('.')
                .filter(|s| !s.is_empty() && !s.contains('.'))
                .ok_or_else(|| bad("is not ATTR.SUB"))?
                .to_string(),
        ),
    };
    if attr.is_empty() || attr.contains(['.', ' ', '"']) {
        return Err(bad("is not an attribute path"));
    }
    Ok(Path {
        extension,
        attr: attr.to_string(),
        filter,
        sub,
    })
}

/// Does `path` name a top-level attribute of a published schema that this server does not
/// keep (`title`, `phoneNumbers[type eq "work"].value`, `password`)? Such an operation is
/// ignored, as a PUT and a path-less PATCH ignore unknown attributes (RFC 7644 3.3): Entra
/// sends every changed attribute of its mapping in one PATCH, and refusing the whole PATCH for
/// a `title` would lose the `active=false` beside it. A malformed path, a schema that is not
/// published, and an unknown sub-attribute of a published attribute are still refused.
fn unpublished(attrs: &[Attr], path: &Path) -> bool {
    schema::find(attrs, &path.attr).is_none()
}

fn resolve<'a>(attrs: &'a [Attr], path: &Path, raw: &str) -> Result<&'a Attr, ScimError> {
    let attr = schema::find(attrs, &path.attr).ok_or_else(|| {
        ScimError::invalid_path(format!(
            "path '{}': no attribute {} is published",
            raw.escape_debug(),
            path.attr
        ))
    })?;
    if attr.mutability == Mutability::ReadOnly {
        return Err(ScimError::mutability(format!("{} is read-only", attr.name)));
    }
    if let Some(sub) = &path.sub {
        let s = schema::find(attr.sub, sub).ok_or_else(|| {
            ScimError::invalid_path(format!(
                "path '{}': {} has no sub-attribute {sub}",
                raw.escape_debug(),
                attr.name
            ))
        })?;
        if s.mutability == Mutability::ReadOnly {
            return Err(ScimError::mutability(format!("{}.{} is read-only", attr.name, s.name)));
        }
    }
    if path.filter.is_some() && !(attr.multi && attr.kind == Type::Complex) {
        return Err(ScimError::invalid_path(format!(
            "path '{}': only multi-valued attributes take a value filter",
            raw.escape_debug()
        )));
    }
    Ok(attr)
}

fn matches(item: &Value, filter: &(String, String)) -> bool {
    item.as_object()
        .and_then(|o| get_ci(o, &filter.0))
        .and_then(Value::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case(&filter.1))
}

/// Apply one operation at `path` in `container` (the document, or the extension's object).
fn apply_at(
    container: &mut Map<String, Value>,
    attr: &Attr,
    path: &Path,
    op: Op,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let name = attr.name.to_string();
    let sub_attr = path.sub.as_deref().and_then(|s| schema::find(attr.sub, s));
    match (&path.filter, sub_attr) {
        (None, None) => match op {
            Op::Remove => {
                container.remove(&name);
            }
            Op::Replace | Op::Add => {
                let cleaned = clean_value(attr, value.unwrap_or(&Value::Null), attr.name)?;
                match (cleaned, container.get_mut(&name)) {
                    (None, _) if op == Op::Replace => {
                        container.remove(&name);
                    }
                    (None, _) => {}
                    (Some(Value::Array(new)), Some(Value::Array(old))) if op == Op::Add => {
                        for v in new {
                            if !old.contains(&v) {
                                old.push(v);
                            }
                        }
                    }
                    // A complex single value merges its sub-attributes, on add and on
                    // replace alike (RFC 7644 3.5.2.3: those not given are left as they are).
                    (Some(Value::Object(new)), Some(Value::Object(old))) if !attr.multi => {
                        old.extend(new);
                    }
                    (Some(v), _) => {
                        container.insert(name, v);
                    }
                }
            }
        },
        (None, Some(sub)) => {
            let cleaned = match op {
                Op::Remove => None,
                _ => clean_value(
                    sub,
                    value.unwrap_or(&Value::Null),
                    &format!("{}.{}", attr.name, sub.name),
                )?,
            };
            let set = |o: &mut Map<String, Value>| match &cleaned {
                Some(v) => {
                    o.insert(sub.name.to_string(), v.clone());
                }
                None => {
                    o.remove(sub.name);
                }
            };
            match container.get_mut(&name) {
                Some(Value::Array(items)) => items.iter_mut().filter_map(Value::as_object_mut).for_each(set),
                Some(Value::Object(o)) => set(o),
                _ if cleaned.is_some() => {
                    let mut o = Map::new();
                    set(&mut o);
                    container.insert(
                        name.clone(),
                        if attr.multi {
                            Value::Array(vec![o.into()])
                        } else {
                            o.into()
                        },
                    );
                }
                _ => {}
            }
            if container
                .get(&name)
                .is_some_and(|v| v.as_object().is_some_and(Map::is_empty))
            {
                container.remove(&name);
            }
        }
        (Some(filter), sub) => {
            let items = match container.get_mut(&name) {
                Some(Value::Array(items)) => std::mem::take(items),
                _ => Vec::new(),
            };
            let mut items = items;
            let matched = items.iter().any(|i| matches(i, filter));
            match (op, sub) {
                (Op::Remove, None) => items.retain(|i| !matches(i, filter)),
                (Op::Remove, Some(sub)) => items
                    .iter_mut()
                    .filter(|i| matches(i, filter))
                    .filter_map(Value::as_object_mut)
                    .for_each(|o| {
                        o.remove(sub.name);
                    }),
                (_, Some(sub)) => {
                    let v = clean_value(
                        sub,
                        value.unwrap_or(&Value::Null),
                        &format!("{}.{}", attr.name, sub.name),
                    )?;
                    if matched {
                        for o in items
                            .iter_mut()
                            .filter(|i| matches(i, filter))
                            .filter_map(Value::as_object_mut)
                        {
                            match &v {
                                Some(v) => o.insert(sub.name.to_string(), v.clone()),
                                None => o.remove(sub.name),
                            };
                        }
                    } else if let Some(v) = v {
                        // Entra adds `emails[type eq "work"].value` to a user without one:
                        // the element the filter describes is made.
                        let mut o = Map::new();
                        let key = schema::find(attr.sub, &filter.0).map_or(filter.0.clone(), |a| a.name.to_string());
                        o.insert(key, filter.1.clone().into());
                        o.insert(sub.name.to_string(), v);
                        items.push(o.into());
                    }
                }
                (_, None) => {
                    let new = clean_value(attr, value.unwrap_or(&Value::Null), attr.name)?;
                    let new: Vec<Value> = match new {
                        Some(Value::Array(v)) => v,
                        _ => Vec::new(),
                    };
                    if matched {
                        let mut merged = Vec::new();
                        for item in items.drain(..) {
                            if matches(&item, filter) {
                                let mut o = item.as_object().cloned().unwrap_or_default();
                                for n in &new {
                                    if let Some(n) = n.as_object() {
                                        o.extend(n.clone());
                                    }
                                }
                                merged.push(Value::Object(o));
                            } else {
                                merged.push(item);
                            }
                        }
                        items = merged;
                    } else {
                        items.extend(new);
                    }
                }
            }
            items.retain(|i| !i.as_object().is_some_and(Map::is_empty));
            if items.is_empty() {
                container.remove(&name);
            } else {
                container.insert(name, Value::Array(items));
            }
        }
    }
    Ok(())
}

/// Apply `operations` to a user's document; the result is cleaned again as a whole.
pub fn apply_user(doc: &Map<String, Value>, operations: &[Operation]) -> Result<Map<String, Value>, ScimError> {
    let mut doc = doc.clone();
    for operation in operations {
        match &operation.path {
            Some(path) => user_op(&mut doc, path, operation.op, operation.value.as_ref())?,
            None => {
                let object = operation
                    .value
                    .as_ref()
                    .and_then(Value::as_object)
                    .ok_or_else(|| ScimError::invalid_value("an operation without a path needs an object value"))?;
                for (key, value) in object {
                    // What the server owns is ignored here, as in a PUT.
                    if ["id", "schemas", "meta", "groups"]
                        .iter()
                        .any(|k| k.eq_ignore_ascii_case(key))
                    {
                        continue;
                    }
                    if key.eq_ignore_ascii_case(ENTERPRISE_USER) {
                        let ext = value
                            .as_object()
                            .ok_or_else(|| ScimError::invalid_value(format!("{ENTERPRISE_USER} must be an object")))?;
                        for (k, v) in ext {
                            user_op(&mut doc, &format!("{ENTERPRISE_USER}:{k}"), operation.op, Some(v))?;
                        }
                        continue;
                    }
                    match user_op(&mut doc, key, operation.op, Some(value)) {
                        // Unknown attributes are ignored on write (RFC 7644 3.3).
                        Err(e) if e.scim_type == Some(super::ScimType::InvalidPath) => {}
                        other => other?,
                    }
                }
            }
        }
    }
    clean_user(&Value::Object(doc))
}

fn user_op(doc: &mut Map<String, Value>, raw: &str, op: Op, value: Option<&Value>) -> Result<(), ScimError> {
    let path = parse_path(raw, USER_SCHEMA)?;
    if !path.extension && path.attr.eq_ignore_ascii_case("externalId") {
        if path.filter.is_some() || path.sub.is_some() {
            return Err(ScimError::invalid_path("externalId is a string"));
        }
        match (op, value) {
            (Op::Remove, _) | (_, None | Some(Value::Null)) => doc.remove("externalId"),
            (_, Some(v)) => doc.insert("externalId".into(), clean_string(v, "externalId")?.into()),
        };
        return Ok(());
    }
    if !path.extension
        && ["id", "meta", "schemas"]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&path.attr))
    {
        return Err(ScimError::mutability(format!("{} is set by the server", path.attr)));
    }
    if path.extension {
        let mut ext = doc
            .remove(ENTERPRISE_USER)
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        let result = if path.attr.is_empty() {
            match op {
                Op::Remove => {
                    ext.clear();
                    Ok(())
                }
                _ => {
                    let object = value
                        .and_then(Value::as_object)
                        .ok_or_else(|| ScimError::invalid_value(format!("{ENTERPRISE_USER} must be an object")))?;
                    if op == Op::Replace {
                        ext.clear();
                    }
                    object.iter().try_for_each(|(k, v)| {
                        let sub = Path {
                            extension: true,
                            attr: k.clone(),
                            filter: None,
                            sub: None,
                        };
                        match schema::find(&ENTERPRISE_ATTRS, k) {
                            Some(attr) => apply_at(&mut ext, attr, &sub, op, Some(v)),
                            None => Ok(()),
                        }
                    })
                }
            }
        } else if schema::find(&ENTERPRISE_ATTRS, &path.attr).is_none() {
            // Not published: ignored, as `unpublished` says.
            Ok(())
        } else {
            resolve(&ENTERPRISE_ATTRS, &path, raw).and_then(|attr| apply_at(&mut ext, attr, &path, op, value))
        };
        if !ext.is_empty() {
            doc.insert(ENTERPRISE_USER.into(), Value::Object(ext));
        }
        return result;
    }
    if unpublished(&USER_ATTRS, &path) {
        return Ok(());
    }
    let attr = resolve(&USER_ATTRS, &path, raw)?;
    if op == Op::Remove && attr.required {
        return Err(ScimError::mutability(format!(
            "{} is required; it cannot be removed",
            attr.name
        )));
    }
    apply_at(doc, attr, &path, op, value)
}

/// Ids in the order first given, with membership answered from a hash set: a PATCH of
/// thousands of ids in many operations costs time in proportion to the ids, never to their
/// square. A removal only forgets the id; `into_vec` leaves out what was forgotten.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct IdList {
    order: Vec<String>,
    present: std::collections::HashSet<String>,
}

impl IdList {
    fn insert(&mut self, id: String) {
        if self.present.insert(id.clone()) {
            self.order.push(id);
        }
    }

    fn remove(&mut self, id: &str) {
        self.present.remove(id);
    }

    fn is_empty(&self) -> bool {
        self.present.is_empty()
    }

    fn into_vec(self) -> Vec<String> {
        let mut present = self.present;
        // An id removed and given again is pushed twice: keep its first place once.
        self.order.into_iter().filter(|id| present.remove(id)).collect()
    }
}

/// How a PATCH changes a group's members, collected in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberEdit {
    /// The whole list, once an operation set it (replace, remove of all).
    set: Option<IdList>,
    add: IdList,
    remove: IdList,
    /// Ids given across all operations, bounded by `MAX_MEMBERS` for the whole PATCH.
    given: usize,
}

impl MemberEdit {
    /// Count `n` more ids given: the bound is on the PATCH, not on each of its operations.
    fn take(&mut self, n: usize) -> Result<(), ScimError> {
        self.given = self.given.saturating_add(n);
        if self.given > MAX_MEMBERS {
            return Err(ScimError::new(
                400,
                Some(super::ScimType::TooMany),
                format!("members: over {MAX_MEMBERS} member ids in one PATCH; send them in several"),
            ));
        }
        Ok(())
    }

    fn add(&mut self, ids: Vec<String>) -> Result<(), ScimError> {
        self.take(ids.len())?;
        for id in ids {
            match &mut self.set {
                Some(list) => list.insert(id),
                None => {
                    self.remove.remove(&id);
                    self.add.insert(id);
                }
            }
        }
        Ok(())
    }

    fn remove(&mut self, ids: Vec<String>) -> Result<(), ScimError> {
        self.take(ids.len())?;
        for id in ids {
            match &mut self.set {
                Some(list) => list.remove(&id),
                None => {
                    self.add.remove(&id);
                    self.remove.insert(id);
                }
            }
        }
        Ok(())
    }

    fn set(&mut self, ids: Vec<String>) -> Result<(), ScimError> {
        self.take(ids.len())?;
        let mut list = IdList::default();
        for id in ids {
            list.insert(id);
        }
        self.set = Some(list);
        self.add = IdList::default();
        self.remove = IdList::default();
        Ok(())
    }

    pub fn change(self) -> MemberChange {
        match self.set {
            Some(list) => MemberChange::Set(list.into_vec()),
            None if self.add.is_empty() && self.remove.is_empty() => MemberChange::Keep,
            None => MemberChange::Edit {
                add: self.add.into_vec(),
                remove: self.remove.into_vec(),
            },
        }
    }
}

/// Apply `operations` to a group's document, collecting the member changes.
pub fn apply_group(
    doc: &Map<String, Value>,
    operations: &[Operation],
) -> Result<(Map<String, Value>, MemberChange), ScimError> {
    let mut doc = doc.clone();
    let mut members = MemberEdit::default();
    for operation in operations {
        match &operation.path {
            Some(path) => group_op(&mut doc, &mut members, path, operation.op, operation.value.as_ref())?,
            None => {
                let object = operation
                    .value
                    .as_ref()
                    .and_then(Value::as_object)
                    .ok_or_else(|| ScimError::invalid_value("an operation without a path needs an object value"))?;
                for (key, value) in object {
                    if ["id", "schemas", "meta"].iter().any(|k| k.eq_ignore_ascii_case(key)) {
                        continue;
                    }
                    match group_op(&mut doc, &mut members, key, operation.op, Some(value)) {
                        Err(e) if e.scim_type == Some(super::ScimType::InvalidPath) => {}
                        other => other?,
                    }
                }
            }
        }
    }
    let (doc, _) = super::resource::clean_group(&Value::Object(doc))?;
    Ok((doc, members.change()))
}

fn group_op(
    doc: &mut Map<String, Value>,
    members: &mut MemberEdit,
    raw: &str,
    op: Op,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let path = parse_path(raw, GROUP_SCHEMA)?;
    if path.extension {
        return Err(ScimError::invalid_path(format!(
            "path '{raw}': groups have no extension"
        )));
    }
    if path.attr.eq_ignore_ascii_case("externalId") {
        match (op, value) {
            (Op::Remove, _) | (_, None | Some(Value::Null)) => doc.remove("externalId"),
            (_, Some(v)) => doc.insert("externalId".into(), clean_string(v, "externalId")?.into()),
        };
        return Ok(());
    }
    if ["id", "meta", "schemas"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(&path.attr))
    {
        return Err(ScimError::mutability(format!("{} is set by the server", path.attr)));
    }
    if unpublished(&GROUP_ATTRS, &path) {
        return Ok(());
    }
    let attr = resolve(&GROUP_ATTRS, &path, raw)?;
    if attr.name == "members" {
        if path.sub.is_some() {
            return Err(ScimError::invalid_path(format!(
                "path '{raw}': change members by value, as members or members[value eq \"ID\"]"
            )));
        }
        let given = || member_ids(value.unwrap_or(&Value::Null));
        return match (&path.filter, op) {
            (None, Op::Add) => members.add(given()?),
            (None, Op::Replace) => members.set(given()?),
            // Entra removes members by value list; no value removes them all.
            (None, Op::Remove) => match value {
                Some(v) => members.remove(member_ids(v)?),
                None => members.set(Vec::new()),
            },
            (Some((sub, id)), Op::Remove) if sub.eq_ignore_ascii_case("value") => members.remove(vec![id.clone()]),
            (Some((sub, _)), _) if !sub.eq_ignore_ascii_case("value") => Err(ScimError::invalid_filter(format!(
                "members are chosen by value only, not by {sub}"
            ))),
            (Some((_, id)), Op::Add | Op::Replace) => members.add(vec![id.clone()]),
            (Some(_), Op::Remove) => Ok(()),
        };
    }
    if op == Op::Remove && attr.required {
        return Err(ScimError::mutability(format!(
            "{} is required; it cannot be removed",
            attr.name
        )));
    }
    apply_at(doc, attr, &path, op, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::resource::{clean_user, UserFields};
    use crate::scim::ScimType;
    use serde_json::json;

    fn ops(body: Value) -> Vec<Operation> {
        parse(&body).unwrap()
    }

    fn alice() -> Map<String, Value> {
        clean_user(&json!({
            "schemas": [USER_SCHEMA],
            "userName": "alice@example.com",
            "name": {"givenName": "Alice", "familyName": "Liddell"},
            "emails": [{"value": "alice@example.com", "type": "work", "primary": true}],
            "active": true,
        }))
        .unwrap()
    }

    #[test]
    fn okta_deactivates_with_a_pathless_replace() {
        let body =
            json!({"schemas": [schema::PATCH_OP], "Operations": [{"op": "replace", "value": {"active": false}}]});
        let doc = apply_user(&alice(), &ops(body)).unwrap();
        assert_eq!(doc["active"], false);
        assert_eq!(doc["userName"], "alice@example.com");
    }

    #[test]
    fn entra_sends_capitalised_ops_string_booleans_and_filtered_paths() {
        let body = json!({"schemas": [schema::PATCH_OP], "Operations": [
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "path": "emails[type eq \"home\"].value", "value": "a@home.example"},
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "alice@new.example"},
            {"op": "Replace", "path": "name.givenName", "value": "Al"},
            {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": {"value": "u-bob"}},
            {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "SRE"},
            {"op": "Add", "value": {"displayName": "Alice L", "name.familyName": "L", "externalId": "00u1", "nickName": "ignored"}},
        ]});
        let doc = apply_user(&alice(), &ops(body)).unwrap();
        assert_eq!(doc["active"], false);
        assert_eq!(doc["emails"][0]["value"], "alice@new.example");
        assert_eq!(doc["emails"][1], json!({"type": "home", "value": "a@home.example"}));
        assert_eq!(doc["name"], json!({"givenName": "Al", "familyName": "L"}));
        assert_eq!(doc[ENTERPRISE_USER]["manager"]["value"], "u-bob");
        assert_eq!(doc[ENTERPRISE_USER]["department"], "SRE");
        assert_eq!(doc["displayName"], "Alice L");
        assert_eq!(doc["externalId"], "00u1");
        assert!(doc.get("nickName").is_none());
        let fields = UserFields::of(&doc).unwrap();
        assert_eq!(fields.active, Some(false));
        assert_eq!(fields.manager_id.as_deref(), Some("u-bob"));
    }

    #[test]
    fn remove_takes_attributes_sub_attributes_and_filtered_values_away() {
        let body = json!({"Operations": [
            {"op": "remove", "path": "emails[type eq \"work\"]"},
            {"op": "remove", "path": "name.familyName"},
        ]});
        let doc = apply_user(&alice(), &ops(body)).unwrap();
        assert!(doc.get("emails").is_none());
        assert_eq!(doc["name"], json!({"givenName": "Alice"}));
        let body = json!({"Operations": [{"op": "remove", "path": "name"}, {"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"}]});
        let doc = apply_user(&alice(), &ops(body)).unwrap();
        assert!(doc.get("name").is_none());
        assert!(doc.get(ENTERPRISE_USER).is_none());
    }

    #[test]
    fn add_to_a_multi_valued_attribute_appends_without_repeats() {
        let body = json!({"Operations": [{"op": "add", "path": "emails", "value": [
            {"value": "alice@example.com", "type": "work", "primary": true},
            {"value": "b@example.com", "type": "other"}]}]});
        let doc = apply_user(&alice(), &ops(body)).unwrap();
        assert_eq!(doc["emails"].as_array().map(Vec::len), Some(2));
        let body = json!({"Operations": [{"op": "replace", "path": "emails", "value": [{"value": "c@example.com"}]}]});
        let doc = apply_user(&alice(), &ops(body)).unwrap();
        assert_eq!(doc["emails"], json!([{"value": "c@example.com"}]));
    }

    /// Entra sends every changed attribute of its mapping in one PATCH: an attribute this
    /// server does not keep (`title`, a phone number, a password) is ignored, and the
    /// deactivation beside it takes effect instead of the whole PATCH being refused.
    #[test]
    fn a_path_to_an_unpublished_attribute_is_ignored_and_the_rest_applies() {
        let body = json!({"schemas": [schema::PATCH_OP], "Operations": [
            {"op": "Replace", "path": "title", "value": "Former employee"},
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "path": "phoneNumbers[type eq \"work\"].value", "value": "+1 555 0100"},
            {"op": "Replace", "path": "password", "value": "hunter2"},
            {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter", "value": "4130"},
            {"op": "Remove", "path": "preferredLanguage"},
        ]});
        let doc = apply_user(&alice(), &ops(body)).unwrap();
        assert_eq!(doc["active"], json!(false));
        for unknown in ["title", "phoneNumbers", "password", "preferredLanguage"] {
            assert!(!doc.contains_key(unknown), "{unknown} kept: {doc:?}");
        }
        assert!(!Value::Object(doc.clone()).to_string().contains("4130"), "{doc:?}");
    }

    /// Member ids are bounded for the whole PATCH, not per operation, and thousands of them
    /// in many operations are collected without comparing each with every other.
    #[test]
    fn member_ids_are_bounded_across_a_whole_patch() {
        let half: Vec<Value> = (0..MAX_MEMBERS / 2 + 1)
            .map(|i| json!({"value": format!("u{i}")}))
            .collect();
        let body = json!({"Operations": [
            {"op": "add", "path": "members", "value": half},
            {"op": "add", "path": "members", "value": half},
        ]});
        let refused = apply_group(&Map::new(), &ops(body)).unwrap_err();
        assert_eq!(refused.scim_type, Some(ScimType::TooMany), "{refused:?}");
        // At the bound, in many operations: added once each, in the order first given, and an
        // id removed then added again is added.
        let ids: Vec<String> = (0..MAX_MEMBERS / 4).map(|i| format!("u{i}")).collect();
        let value: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
        let body = json!({"Operations": [
            {"op": "add", "path": "members", "value": value},
            {"op": "add", "path": "members", "value": value},
            {"op": "remove", "path": "members[value eq \"u1\"]"},
            {"op": "remove", "path": "members", "value": [{"value": "u2"}]},
            {"op": "add", "path": "members", "value": [{"value": "u2"}]},
        ]});
        let (_, change) = apply_group(&Map::new(), &ops(body)).unwrap();
        let mut expected = ids.clone();
        expected.retain(|id| id != "u1");
        assert_eq!(
            change,
            MemberChange::Edit {
                add: expected,
                remove: vec!["u1".to_string()],
            }
        );
    }

    #[test]
    fn what_the_server_owns_or_requires_is_refused_by_path() {
        let refused = |body: Value| apply_user(&alice(), &ops(body)).unwrap_err();
        assert_eq!(
            refused(json!({"Operations": [{"op": "replace", "path": "id", "value": "x"}]})).scim_type,
            Some(ScimType::Mutability)
        );
        assert_eq!(
            refused(json!({"Operations": [{"op": "add", "path": "groups", "value": [{"value": "g"}]}]})).scim_type,
            Some(ScimType::Mutability)
        );
        assert_eq!(
            refused(json!({"Operations": [{"op": "remove", "path": "userName"}]})).scim_type,
            Some(ScimType::Mutability)
        );
        // An unknown sub-attribute of a published attribute is still a mistake worth saying.
        assert_eq!(
            refused(json!({"Operations": [{"op": "replace", "path": "name.nickname", "value": "x"}]})).scim_type,
            Some(ScimType::InvalidPath)
        );
        assert_eq!(
            refused(json!({"Operations": [{"op": "replace", "path": "emails[type co \"w\"].value", "value": "x"}]}))
                .scim_type,
            Some(ScimType::InvalidFilter)
        );
        assert_eq!(
            refused(json!({"Operations": [{"op": "replace", "path": "active", "value": "nope"}]})).scim_type,
            Some(ScimType::InvalidValue)
        );
        assert_eq!(
            refused(json!({"Operations": [{"op": "replace", "path": "displayName", "value": "a\u{0}b"}]})).scim_type,
            Some(ScimType::InvalidValue)
        );
        assert_eq!(
            refused(json!({"Operations": [{"op": "replace", "path": "urn:example:other:nick", "value": "x"}]}))
                .scim_type,
            Some(ScimType::InvalidPath)
        );
        // The pathless form ignores what it does not know but not what it may not change.
        let doc = apply_user(
            &alice(),
            &ops(json!({"Operations": [{"op": "replace", "value": {"id": "x", "meta": {}, "title": "t"}}]})),
        )
        .unwrap();
        assert_eq!(doc, alice());
    }

    #[test]
    fn the_body_must_be_a_patch_op() {
        for body in [
            json!([]),
            json!({"schemas": ["urn:x"], "Operations": []}),
            json!({"Operations": {"op": "add"}}),
            json!({"Operations": [{"op": "move", "path": "a"}]}),
            json!({"Operations": [{"op": "add", "path": "displayName"}]}),
        ] {
            assert_eq!(parse(&body).unwrap_err().status, 400, "{body}");
        }
        assert_eq!(
            parse(&json!({"Operations": [{"op": "remove"}]})).unwrap_err().scim_type,
            Some(ScimType::NoTarget)
        );
        let many: Vec<Value> = (0..=MAX_OPERATIONS)
            .map(|_| json!({"op": "remove", "path": "displayName"}))
            .collect();
        assert_eq!(
            parse(&json!({"Operations": many})).unwrap_err().scim_type,
            Some(ScimType::TooMany)
        );
    }

    #[test]
    fn group_members_as_entra_and_okta_change_them() {
        let doc = Map::new();
        let entra = json!({"schemas": [schema::PATCH_OP], "Operations": [
            {"op": "Add", "path": "members", "value": [{"value": "u1"}, {"value": "u2"}]},
            {"op": "Remove", "path": "members", "value": [{"value": "u3"}]},
        ]});
        let (_, change) = apply_group(&doc, &ops(entra)).unwrap();
        assert_eq!(
            change,
            MemberChange::Edit {
                add: vec!["u1".into(), "u2".into()],
                remove: vec!["u3".into()]
            }
        );
        let okta = json!({"Operations": [{"op": "remove", "path": "members[value eq \"u1\"]"}]});
        assert_eq!(
            apply_group(&doc, &ops(okta)).unwrap().1,
            MemberChange::Edit {
                add: vec![],
                remove: vec!["u1".into()]
            }
        );
        let replace = json!({"Operations": [
            {"op": "replace", "value": {"displayName": "sre", "members": [{"value": "u1"}]}},
            {"op": "add", "path": "members", "value": [{"value": "u2"}]},
            {"op": "remove", "path": "members[value eq \"u1\"]"},
        ]});
        let (doc2, change) = apply_group(&doc, &ops(replace)).unwrap();
        assert_eq!(doc2["displayName"], "sre");
        assert_eq!(change, MemberChange::Set(vec!["u2".into()]));
        let add_then_remove = json!({"Operations": [
            {"op": "add", "path": "members", "value": [{"value": "u1"}]},
            {"op": "remove", "path": "members", "value": [{"value": "u1"}]},
        ]});
        assert_eq!(
            apply_group(&doc, &ops(add_then_remove)).unwrap().1,
            MemberChange::Edit {
                add: vec![],
                remove: vec!["u1".into()]
            }
        );
        let all = json!({"Operations": [{"op": "remove", "path": "members"}]});
        assert_eq!(apply_group(&doc, &ops(all)).unwrap().1, MemberChange::Set(vec![]));
        let none = json!({"Operations": [{"op": "replace", "path": "displayName", "value": "dev"}]});
        assert_eq!(apply_group(&doc, &ops(none)).unwrap().1, MemberChange::Keep);
    }

    #[test]
    fn group_member_values_are_checked() {
        let doc = Map::new();
        for value in [
            json!([{"display": "x"}]),
            json!([{"value": ""}]),
            json!([{"value": "u\u{0}"}]),
            json!([{"value": 7}]),
        ] {
            let body = json!({"Operations": [{"op": "add", "path": "members", "value": value}]});
            assert_eq!(
                apply_group(&doc, &ops(body)).unwrap_err().scim_type,
                Some(ScimType::InvalidValue)
            );
        }
        let body =
            json!({"Operations": [{"op": "add", "path": "members[display eq \"x\"]", "value": [{"value": "u"}]}]});
        assert_eq!(
            apply_group(&doc, &ops(body)).unwrap_err().scim_type,
            Some(ScimType::InvalidFilter)
        );
    }

    #[test]
    fn paths_parse() {
        let p = parse_path("emails[type eq \"work\"].value", USER_SCHEMA).unwrap();
        assert_eq!(
            (p.attr.as_str(), p.filter, p.sub.as_deref()),
            ("emails", Some(("type".into(), "work".into())), Some("value"))
        );
        let p = parse_path("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName", USER_SCHEMA).unwrap();
        assert_eq!(
            (p.extension, p.attr.as_str(), p.sub.as_deref()),
            (false, "name", Some("givenName"))
        );
        let p = parse_path(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            USER_SCHEMA,
        )
        .unwrap();
        assert_eq!(
            (p.extension, p.attr.as_str(), p.sub.as_deref()),
            (true, "manager", Some("value"))
        );
        assert!(parse_path(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            USER_SCHEMA
        )
        .unwrap()
        .attr
        .is_empty());
        for bad in [
            "a.b.c",
            "emails[type eq \"w\"",
            "",
            "urn:ietf:params:scim:schemas:core:2.0:User:",
        ] {
            assert!(parse_path(bad, USER_SCHEMA).is_err(), "{bad}");
        }
    }
}
