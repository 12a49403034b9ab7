use std::borrow::Cow;

use schemars::JsonSchema;
use serde::Serialize;

use crate::{CommandError, Reply, ReplyData};

/// The body of every response of the bus, the router and the fixed routes.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Envelope {
    /// `true` on a 2xx answer, `false` on every error.
    pub success: bool,
    /// The answer; `null` on errors.
    #[schemars(with = "serde_json::Value")]
    pub data: ReplyData,
    /// What happened, in a sentence.
    pub message: Cow<'static, str>,
    /// On errors: every problem found, a field's name first where one is at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<String>>,
}

impl Envelope {
    /// A success carrying `data`.
    pub fn ok(data: impl Into<ReplyData>, message: impl Into<Cow<'static, str>>) -> Self {
        Self { success: true, data: data.into(), message: message.into(), errors: None }
    }
}

impl From<Reply> for Envelope {
    fn from(reply: Reply) -> Self {
        Self::ok(reply.data, reply.message)
    }
}

impl From<&CommandError> for Envelope {
    fn from(error: &CommandError) -> Self {
        Self {
            success: false,
            data: serde_json::Value::Null.into(),
            message: error.message().into(),
            errors: Some(error.details()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::SharedJson;

    #[test]
    fn shared_data_is_sent_and_logged_as_its_tree_would_be() {
        let value = json!({"b": [1, "two", null, 2.5], "a": {"nested": true}, "text": "quote \" and \u{e9}\n"});
        let shared = ReplyData::Shared(Arc::new(SharedJson::new(value.clone()).expect("serializable")));
        let own = ReplyData::Value(value.clone());
        let body = |data: &ReplyData| serde_json::to_string(&Envelope::ok(data.clone(), "done")).expect("serializable");
        assert_eq!(body(&shared), body(&own));
        assert_eq!(shared.to_text().expect("text"), own.to_text().expect("text"));
        assert_eq!(shared.into_value(), value);
    }
}
