//! Runtime settings as an operator manages them, over [`crate::settings`] (the keys, their
//! meanings, defaults and validation shared with the gateway). Global: admins only.

use serde::Serialize;

use super::{Access, AdminError, Cx};
use crate::settings::{KEYS, validate};

/// One setting.
#[derive(Debug, Clone, Serialize)]
pub struct SettingView {
    pub key: &'static str,
    pub value: String,
    /// No value stored: `value` is the default.
    pub default: bool,
    pub meaning: &'static str,
}

/// Every known setting with its value, or its default.
pub async fn list(cx: &mut Cx<'_>) -> Result<Vec<SettingView>, AdminError> {
    cx.require(Access::Administer)?;
    let stored = cx.tx.list_settings().await?;
    Ok(KEYS
        .iter()
        .map(
            |(key, meaning, default)| match stored.iter().find(|(k, _)| k == key) {
                Some((_, v)) => SettingView {
                    key,
                    value: v.clone(),
                    default: false,
                    meaning,
                },
                None => SettingView {
                    key,
                    value: (*default).to_owned(),
                    default: true,
                    meaning,
                },
            },
        )
        .collect())
}

/// Sets a setting (trimmed); running gateways apply it within a second.
pub async fn set(cx: &mut Cx<'_>, key: &str, value: &str) -> Result<SettingView, AdminError> {
    cx.require(Access::Administer)?;
    let Some((key, meaning, _)) = KEYS.iter().find(|(k, _, _)| *k == key) else {
        return Err(AdminError::NotFound(
            validate(key, value).err().unwrap_or_default(),
        ));
    };
    validate(key, value).map_err(AdminError::Invalid)?;
    let value = value.trim();
    cx.tx.set_setting(key, value).await?;
    Ok(SettingView {
        key,
        value: value.to_owned(),
        default: false,
        meaning,
    })
}
