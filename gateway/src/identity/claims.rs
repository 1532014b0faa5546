//! Claims to roles, the same way for OIDC id_tokens and JWTs.

use gatehouse_policy::RoleName;
use std::collections::BTreeSet;

use gatehouse_policy::ClaimMapping;
use serde_json::Value;

/// The default roles plus the roles mapped from each value of the roles
/// claim (a string or an array of strings). Unknown values grant nothing.
pub fn roles_from(claims: &Value, mapping: &ClaimMapping) -> BTreeSet<RoleName> {
    let mut roles = mapping.default_roles.clone();
    let values: Vec<&str> = match claims.get(&mapping.roles_claim) {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    for value in values {
        if let Some(mapped) = mapping.role_map.get(value) {
            roles.extend(mapped.iter().cloned());
        }
    }
    roles
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping() -> ClaimMapping {
        ClaimMapping {
            roles_claim: "groups".into(),
            role_map: [("ops".to_owned(), ["operator".into()].into())].into(),
            default_roles: ["viewer".into()].into(),
        }
    }

    #[test]
    fn array_and_string_claims_map_to_roles() {
        let roles = roles_from(&json!({"groups": ["ops", "unknown"]}), &mapping());
        assert_eq!(roles, ["operator".into(), "viewer".into()].into());
        let roles = roles_from(&json!({"groups": "ops"}), &mapping());
        assert!(roles.contains("operator"));
    }

    #[test]
    fn missing_or_odd_claims_grant_only_defaults() {
        for claims in [json!({}), json!({"groups": 7}), json!({"groups": [1, 2]})] {
            assert_eq!(roles_from(&claims, &mapping()), ["viewer".into()].into());
        }
    }
}
