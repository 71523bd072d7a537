//! What an instance is, as stored: its name, project, type, config and devices, in Incus's
//! vocabulary, plus the names' validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Incus's two instance types. Only virtual machines run here; a container definition exists so
/// that it can be refused with a clear error rather than misread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceType {
    /// A system container (not supported by vgashot).
    Container,
    /// A QEMU virtual machine.
    VirtualMachine,
}

impl InstanceType {
    /// The name Incus uses on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::VirtualMachine => "virtual-machine",
        }
    }
}

/// A device's settings: `type` plus the keys of that type (e.g. `source`, `path` for a disk).
pub type DeviceConfig = BTreeMap<String, String>;

/// An instance as it is stored, one file per instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceDefinition {
    /// The instance's name, unique within its project ([`validate_instance_name`]).
    pub name: String,
    /// The project it belongs to ([`validate_project_name`]).
    pub project: String,
    /// Container or virtual machine.
    #[serde(rename = "type")]
    pub instance_type: InstanceType,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Configuration keys (`limits.cpu`, `limits.memory`, `vgashot.*`, `user.*`, ...).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Devices by name, each with its `type`.
    #[serde(default)]
    pub devices: BTreeMap<String, DeviceConfig>,
    /// Profiles applied, in order (their contents are merged by the API layer before here).
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Whether the instance is deleted when it stops.
    #[serde(default)]
    pub ephemeral: bool,
    /// When it was created, RFC 3339.
    pub created_at: String,
    /// When it was last started, RFC 3339; empty if never.
    #[serde(default)]
    pub last_used_at: String,
}

/// A name that Incus would refuse, with Incus's own wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty or longer than a DNS label.
    #[error("Name must be 1-63 characters long")]
    Length,
    /// Starts with a hyphen.
    #[error("Name must not start with \"-\" character")]
    LeadingHyphen,
    /// Ends with a hyphen.
    #[error("Name must not end with \"-\" character")]
    TrailingHyphen,
    /// Starts with a digit.
    #[error("Name must not start with a number")]
    LeadingDigit,
    /// Has a character other than ASCII letters, digits and hyphens.
    #[error("Name can only contain alphanumeric and hyphen characters")]
    Character,
    /// A project name that cannot be a file name.
    #[error("Project name may only contain alphanumeric, hyphen and underscore characters")]
    ProjectCharacter,
}

/// Checks an instance name as Incus does: a DNS hostname label.
///
/// The name also becomes a file name in the state and runtime directories, which these rules
/// make safe (no `/`, no `.`).
pub fn validate_instance_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > 63 {
        return Err(NameError::Length);
    }
    if name.starts_with('-') {
        return Err(NameError::LeadingHyphen);
    }
    if name.ends_with('-') {
        return Err(NameError::TrailingHyphen);
    }
    if name.starts_with(|first: char| first.is_ascii_digit()) {
        return Err(NameError::LeadingDigit);
    }
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
    {
        return Err(NameError::Character);
    }
    Ok(())
}

/// Checks a project name: 1-63 ASCII letters, digits, hyphens and underscores, so it is a safe
/// file name.
pub fn validate_project_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > 63 {
        return Err(NameError::Length);
    }
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    {
        return Err(NameError::ProjectCharacter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_follow_incus() {
        for good in ["v1", "a", "web-01", "A-b-C", &"x".repeat(63)] {
            assert_eq!(validate_instance_name(good), Ok(()), "{good}");
        }
        let cases = [
            ("", NameError::Length),
            (&*"x".repeat(64), NameError::Length),
            ("-v1", NameError::LeadingHyphen),
            ("v1-", NameError::TrailingHyphen),
            ("1v", NameError::LeadingDigit),
            ("v_1", NameError::Character),
            ("v.1", NameError::Character),
            ("../etc", NameError::Character),
            ("v/1", NameError::Character),
            ("vé", NameError::Character),
        ];
        for (bad, error) in cases {
            assert_eq!(validate_instance_name(bad), Err(error), "{bad}");
        }
        assert_eq!(
            NameError::LeadingHyphen.to_string(),
            "Name must not start with \"-\" character"
        );
    }

    #[test]
    fn project_names_are_safe_file_names() {
        assert_eq!(validate_project_name("default"), Ok(()));
        assert_eq!(validate_project_name("team_a-1"), Ok(()));
        for bad in ["", "..", "a/b", "a b", "."] {
            assert!(validate_project_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn definitions_use_incus_field_names() {
        let definition = InstanceDefinition {
            name: "v1".into(),
            project: "default".into(),
            instance_type: InstanceType::VirtualMachine,
            description: String::new(),
            config: BTreeMap::from([("limits.cpu".into(), "2".into())]),
            devices: BTreeMap::new(),
            profiles: vec!["default".into()],
            ephemeral: false,
            created_at: "2026-11-29T18:00:00Z".into(),
            last_used_at: String::new(),
        };
        let json = serde_json::to_value(&definition).unwrap();
        assert_eq!(json["type"], "virtual-machine");
        let back: InstanceDefinition = serde_json::from_value(json).unwrap();
        assert_eq!(back, definition);
    }
}
