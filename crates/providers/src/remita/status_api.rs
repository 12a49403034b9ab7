//! Remita's payment status API. Remita signs nothing, so when a merchant id and API key are
//! configured, each payment notification's `rrr` is confirmed with Remita before it is accepted:
//! `GET {base}/remita/ecomm/{merchantId}/{rrr}/{hash}/status.reg`, where `hash` is the lower-case
//! hex SHA-512 of `rrr + apiKey + merchantId`. Status `00` or `01` means paid. The answer also
//! carries the amount paid, which the caller compares with the notification's: a paid RRR under a
//! notification that claims a different amount is not taken.
//!
//! The base URL is operator configuration, never request data, so it is called as configured.

use std::time::Duration;

use hookbus_core::CommandError;
use reqwest::header::AUTHORIZATION;
use serde_json::{Map, Value};
use sha2::{Digest, Sha512};

use crate::{
    notification::scalar_text,
    settings::{BadSetting, RemitaSettings, Secret},
};

/// Remita's status codes that mean the payment went through.
const PAID: [&str; 2] = ["00", "01"];

#[derive(Debug)]
pub(crate) struct StatusApi {
    client: reqwest::Client,
    /// Without a trailing `/`.
    base_url: String,
    merchant_id: String,
    api_key: Secret,
}

/// What Remita says of a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PaymentStatus {
    /// With the amount Remita's answer gives, as it wrote it (absent when it gives none), and the
    /// fields of its answer that the published event carries instead of the caller's.
    Paid { amount: Option<String>, confirmed: Map<String, Value> },
    /// Remita's status code and message, e.g. `021` "Transaction Pending".
    NotPaid { status: String, message: String },
}

impl StatusApi {
    /// The client for checked settings, or `None` when no credentials are configured.
    pub(crate) fn new(settings: &RemitaSettings) -> Result<Option<Self>, BadSetting> {
        if settings.merchant_id.is_empty() || settings.api_key.is_empty() {
            return Ok(None);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.status_timeout_ms))
            .build()
            .map_err(|e| BadSetting::new("providers.remita", format!("cannot build the status API client: {e}")))?;
        Ok(Some(Self {
            client,
            base_url: settings.base_url.trim_end_matches('/').to_owned(),
            merchant_id: settings.merchant_id.clone(),
            api_key: settings.api_key.clone(),
        }))
    }

    /// Asks Remita about `rrr` (letters, digits and `-` only: parsing made sure). A failure to get
    /// an answer is a 503: the provider should send the notification again later.
    pub(crate) async fn check(&self, rrr: &str) -> Result<PaymentStatus, CommandError> {
        let hash = status_hash(rrr, self.api_key.expose(), &self.merchant_id);
        let url = format!("{}/remita/ecomm/{}/{rrr}/{hash}/status.reg", self.base_url, self.merchant_id);
        let response = self
            .client
            .get(url)
            .header(AUTHORIZATION, format!("remitaConsumerKey={},remitaConsumerToken={hash}", self.merchant_id))
            .send()
            .await
            .map_err(|e| unavailable(format!("the status API could not be reached: {}", e.without_url())))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("the status API answered {}", response.status().as_u16())));
        }
        let answer: Value =
            response.json().await.map_err(|_| unavailable("the status API did not answer with JSON".into()))?;
        let text = |name: &str| answer.get(name).and_then(scalar_text);
        let Some(status) = text("status") else {
            return Err(unavailable("the status API's answer has no status".into()));
        };
        if PAID.contains(&status.as_str()) {
            return Ok(PaymentStatus::Paid { amount: text("amount"), confirmed: confirmed_fields(&answer) });
        }
        Ok(PaymentStatus::NotPaid { status, message: text("message").unwrap_or_default() })
    }
}

/// Remita's answer field and the notification field it confirms. What Remita answers is published
/// in place of what the caller sent; the caller's other fields (payer, bank, ...) stay as sent.
const CONFIRMED_FIELDS: [(&str, &str); 7] = [
    ("amount", "amount"),
    ("RRR", "rrr"),
    ("orderId", "orderRef"),
    ("status", "status"),
    ("message", "statusMessage"),
    ("transactiontime", "transactiondate"),
    ("paymentDate", "paymentDate"),
];

/// The notification fields Remita's answer confirms, under the notification's names.
fn confirmed_fields(answer: &Value) -> Map<String, Value> {
    CONFIRMED_FIELDS
        .iter()
        .filter_map(|(theirs, ours)| {
            answer.get(*theirs).filter(|v| !v.is_null()).map(|v| ((*ours).to_owned(), v.clone()))
        })
        .collect()
}

/// Lower-case hex SHA-512 of `rrr + apiKey + merchantId`.
pub(crate) fn status_hash(rrr: &str, api_key: &str, merchant_id: &str) -> String {
    let mut digest = Sha512::new();
    digest.update(rrr.as_bytes());
    digest.update(api_key.as_bytes());
    digest.update(merchant_id.as_bytes());
    hex::encode(digest.finalize())
}

fn unavailable(detail: String) -> CommandError {
    CommandError::Rejected { status: 503, message: "Payment status unavailable".into(), errors: vec![detail] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_sha512_of_rrr_api_key_and_merchant_id() {
        // printf '%s' '110002071256''1946''2547916' | sha512sum
        assert_eq!(
            status_hash("110002071256", "1946", "2547916"),
            "29f4cf7194e7a79ae624c599482b31a139a76ae61136f7e9b7937504a152d153af7526431eab1c0aec0c58d758cba88ebf984df235bc417688d825f135e6cfbe"
        );
    }
}
