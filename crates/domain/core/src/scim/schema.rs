//! What jitgate publishes at `/Schemas`, `/ResourceTypes` and `/ServiceProviderConfig`, and
//! the attribute catalogue the representation and PATCH code read: only what is published
//! is kept (RFC 7644 3.3 lets a provider ignore the rest on write).

use serde_json::{json, Value};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// The most items one list page holds (`filter.maxResults`).
pub const MAX_RESULTS: u64 = 200;
/// A page's size when `count` is not given.
pub const DEFAULT_COUNT: u64 = 100;

/// An attribute's type, as RFC 7643 2.3 names them (those jitgate publishes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    String,
    Boolean,
    Complex,
    Reference,
}

/// RFC 7643 7 `mutability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadWrite,
    ReadOnly,
    Immutable,
}

/// One published attribute.
#[derive(Debug)]
pub struct Attr {
    pub name: &'static str,
    pub kind: Type,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub unique: bool,
    pub sub: &'static [Attr],
    pub reference_types: &'static [&'static str],
    pub canonical: &'static [&'static str],
    pub description: &'static str,
}

const fn simple(name: &'static str, description: &'static str) -> Attr {
    Attr {
        name,
        kind: Type::String,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        unique: false,
        sub: &[],
        reference_types: &[],
        canonical: &[],
        description,
    }
}

const fn read_only(mut attr: Attr) -> Attr {
    attr.mutability = Mutability::ReadOnly;
    attr
}

const fn reference(name: &'static str, types: &'static [&'static str], description: &'static str) -> Attr {
    let mut attr = simple(name, description);
    attr.kind = Type::Reference;
    attr.reference_types = types;
    attr.case_exact = true;
    attr
}

const NAME_SUB: [Attr; 3] = [
    simple("formatted", "The full name, as it is displayed."),
    simple("familyName", "The family name."),
    simple("givenName", "The given name."),
];

const EMAIL_SUB: [Attr; 3] = [
    simple("value", "The email address."),
    Attr {
        canonical: &["work", "home", "other"],
        ..simple("type", "What the address is for: work, home or other.")
    },
    Attr {
        kind: Type::Boolean,
        ..simple("primary", "Whether this is the user's primary address (at most one).")
    },
];

const MEMBER_SUB: [Attr; 4] = [
    Attr {
        mutability: Mutability::Immutable,
        case_exact: true,
        ..simple("value", "The member user's id.")
    },
    Attr {
        mutability: Mutability::Immutable,
        ..reference("$ref", &["User"], "The member user's URI.")
    },
    read_only(simple("display", "Ignored: members are named by value.")),
    read_only(Attr {
        canonical: &["User"],
        ..simple("type", "Members are users only.")
    }),
];

const MANAGER_SUB: [Attr; 3] = [
    Attr {
        case_exact: true,
        ..simple(
            "value",
            "The manager's SCIM id: they approve the user's { manager = true } steps.",
        )
    },
    reference("$ref", &["User"], "The manager's URI."),
    read_only(simple("displayName", "Ignored on write.")),
];

const GROUP_REF_SUB: [Attr; 3] = [
    read_only(Attr {
        case_exact: true,
        ..simple("value", "The group's id.")
    }),
    read_only(reference("$ref", &["Group"], "The group's URI.")),
    read_only(simple("display", "The group's name.")),
];

/// The core User attributes jitgate keeps.
pub static USER_ATTRS: [Attr; 6] = [
    Attr {
        required: true,
        unique: true,
        ..simple(
            "userName",
            "Unique, compared case-insensitively; the user's principal is made from it (or from the configured attribute).",
        )
    },
    Attr {
        kind: Type::Complex,
        sub: &NAME_SUB,
        ..simple("name", "The user's name.")
    },
    simple("displayName", "The name shown for the user."),
    Attr {
        kind: Type::Complex,
        multi: true,
        sub: &EMAIL_SUB,
        ..simple("emails", "The user's email addresses.")
    },
    Attr {
        kind: Type::Boolean,
        ..simple(
            "active",
            "false ends every grant, pending request, pending approval and token of the user at once.",
        )
    },
    read_only(Attr {
        kind: Type::Complex,
        multi: true,
        sub: &GROUP_REF_SUB,
        ..simple("groups", "The groups the user is a member of (change them through Groups).")
    }),
];

/// The enterprise extension's attributes jitgate keeps.
pub static ENTERPRISE_ATTRS: [Attr; 3] = [
    simple("employeeNumber", "The user's employee number."),
    simple("department", "The user's department."),
    Attr {
        kind: Type::Complex,
        sub: &MANAGER_SUB,
        ..simple("manager", "The user's manager.")
    },
];

/// The core Group attributes jitgate keeps.
pub static GROUP_ATTRS: [Attr; 2] = [
    Attr {
        required: true,
        unique: true,
        ..simple(
            "displayName",
            "The group's name in jitgate, unique case-insensitively; admins, auditors and agents are reserved.",
        )
    },
    Attr {
        kind: Type::Complex,
        multi: true,
        sub: &MEMBER_SUB,
        ..simple("members", "The member users.")
    },
];

/// The attribute called `name` (case-insensitively, as RFC 7643 2.1 says) among `attrs`.
pub fn find<'a>(attrs: &'a [Attr], name: &str) -> Option<&'a Attr> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

fn attr_json(attr: &Attr) -> Value {
    let mut v = json!({
        "name": attr.name,
        "type": match attr.kind {
            Type::String => "string",
            Type::Boolean => "boolean",
            Type::Complex => "complex",
            Type::Reference => "reference",
        },
        "multiValued": attr.multi,
        "description": attr.description,
        "required": attr.required,
        "caseExact": attr.case_exact,
        "mutability": match attr.mutability {
            Mutability::ReadWrite => "readWrite",
            Mutability::ReadOnly => "readOnly",
            Mutability::Immutable => "immutable",
        },
        "returned": "default",
        "uniqueness": if attr.unique { "server" } else { "none" },
    });
    if let Some(map) = v.as_object_mut() {
        if !attr.sub.is_empty() {
            map.insert("subAttributes".into(), attr.sub.iter().map(attr_json).collect());
        }
        if !attr.reference_types.is_empty() {
            map.insert("referenceTypes".into(), json!(attr.reference_types));
        }
        if !attr.canonical.is_empty() {
            map.insert("canonicalValues".into(), json!(attr.canonical));
        }
    }
    v
}

fn schema_json(base: &str, id: &str, name: &str, description: &str, attrs: &[Attr]) -> Value {
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attrs.iter().map(attr_json).collect::<Vec<_>>(),
        "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{id}") },
    })
}

/// Every schema published, `base` being the URL of `/scim/v2`.
pub fn schemas(base: &str) -> Vec<Value> {
    vec![
        schema_json(base, USER_SCHEMA, "User", "A person who may use jitgate", &USER_ATTRS),
        schema_json(
            base,
            ENTERPRISE_USER,
            "EnterpriseUser",
            "The enterprise extension: the manager drives { manager = true } steps",
            &ENTERPRISE_ATTRS,
        ),
        schema_json(
            base,
            GROUP_SCHEMA,
            "Group",
            "A group of users, a group in jitgate's policy",
            &GROUP_ATTRS,
        ),
    ]
}

/// One published schema by its URN (case-insensitive), or `None`.
pub fn schema(base: &str, urn: &str) -> Option<Value> {
    schemas(base)
        .into_iter()
        .find(|s| s["id"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(urn)))
}

/// The two resource types.
pub fn resource_types(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "A person who may use jitgate",
            "schema": USER_SCHEMA,
            "schemaExtensions": [{ "schema": ENTERPRISE_USER, "required": false }],
            "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User") },
        }),
        json!({
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "A group of users",
            "schema": GROUP_SCHEMA,
            "schemaExtensions": [],
            "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group") },
        }),
    ]
}

/// `/ServiceProviderConfig`.
pub fn service_provider_config(base: &str, documentation: &str) -> Value {
    json!({
        "schemas": [SPC_SCHEMA],
        "documentationUri": documentation,
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": MAX_RESULTS },
        "changePassword": { "supported": false },
        "sort": { "supported": false },
        "etag": { "supported": true },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A provisioning token: jitgate token create --principal NAME --scim",
            "primary": true,
        }],
        "meta": { "resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig") },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_schemas_name_what_the_design_keeps() {
        let all = schemas("https://j/scim/v2");
        assert_eq!(all.len(), 3);
        let user = &all[0];
        let names: Vec<&str> = user["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["name"].as_str())
            .collect();
        assert_eq!(names, ["userName", "name", "displayName", "emails", "active", "groups"]);
        assert_eq!(user["attributes"][0]["required"], true);
        assert_eq!(user["attributes"][5]["mutability"], "readOnly");
        assert!(schema("https://j/scim/v2", &ENTERPRISE_USER.to_uppercase()).is_some());
        assert!(schema("https://j/scim/v2", "urn:nope").is_none());
        assert_eq!(
            all[2]["attributes"][1]["subAttributes"][1]["referenceTypes"],
            json!(["User"])
        );
    }

    #[test]
    fn find_is_case_insensitive() {
        assert_eq!(find(&USER_ATTRS, "USERNAME").map(|a| a.name), Some("userName"));
        assert!(find(&USER_ATTRS, "password").is_none());
    }

    #[test]
    fn the_config_says_what_is_supported() {
        let spc = service_provider_config("b", "d");
        assert_eq!(spc["patch"]["supported"], true);
        assert_eq!(spc["etag"]["supported"], true);
        assert_eq!(spc["filter"]["maxResults"], 200);
        assert_eq!(spc["bulk"]["supported"], false);
        assert_eq!(spc["sort"]["supported"], false);
    }
}
