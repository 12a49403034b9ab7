//! The partner API under `/api/Webhook/`, over HTTP: the seed routes, owner scoping, the read
//! route and the error envelope.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    receiver::Receiver,
    support::{ADMIN_TOKEN, Reply, TestApp, within},
};

const PARTNER: &str = "6f1c2a4e-8d3b-4c5a-9e7f-0a1b2c3d4e5f";
const OTHER_PARTNER: &str = "0d9c8b7a-6e5f-4d3c-8b2a-1f0e9d8c7b6a";
const SECRET: &str = "Shared-secret-2026";
const WAIT: Duration = Duration::from_secs(10);

impl TestApp {
    /// Calls partner route `route` (`GET` with `query`, else `POST` with `body`) with `token`.
    async fn partner(&self, token: Option<&str>, method: &str, route: &str, body: Value) -> Reply {
        let url = format!("{}/api/Webhook/{route}", self.address);
        let mut request = match method {
            "GET" => {
                let mut query = url::form_urlencoded::Serializer::new(String::new());
                for (name, value) in body.as_object().into_iter().flatten() {
                    query.append_pair(name, value.as_str().unwrap_or_default());
                }
                self.client.get(format!("{url}?{}", query.finish()))
            }
            _ => self.client.post(url).json(&body),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        crate::support::into_reply(request.send().await.expect("the server answers")).await
    }

    async fn partner_admin(&self, method: &str, route: &str, body: Value) -> Reply {
        self.partner(Some(ADMIN_TOKEN), method, route, body).await
    }

    /// The owner's subscriptions as `GET /api/Webhook/subscription` shows them.
    async fn partner_view(&self, partner: &str) -> Vec<Value> {
        let reply = self.partner_admin("GET", "subscription", json!({"partnerId": partner})).await;
        assert_eq!(reply.status, 200, "{:#}", reply.body);
        reply.body.as_array().cloned().expect("an array of subscriptions")
    }

    /// A token bound to `partner` with `permissions`.
    async fn partner_token(&self, partner: &str, permissions: &[&str]) -> String {
        let reply = self
            .admin(json!({"$type": "CreateApiTokenCommand", "name": "partner", "partnerId": partner,
                          "permissions": permissions}))
            .await;
        reply.assert_ok("API token created successfully")["token"].as_str().expect("token").to_owned()
    }
}

/// An empty 200: what the seed calls an "Empty success response".
#[track_caller]
fn assert_empty_success(reply: &Reply) {
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert_eq!(reply.body, Value::Null, "an empty body");
}

/// The example subscription object of the partner API's documentation, with a valid secret.
fn seed_example() -> Value {
    json!({
        "id": "00000000-0000-0000-0000-000000000000",
        "webhookUri": "https://partner.example.com/webhooks/plexe",
        "secret": SECRET,
        "isActive": true,
        "webhooks": ["WB_Customer_Created", "WB_Application_Created"],
        "partnerId": PARTNER,
    })
}

#[tokio::test]
async fn the_documented_example_registers_and_the_reads_show_it() {
    let app = TestApp::spawn().await;
    assert_empty_success(&app.partner_admin("POST", "register", seed_example()).await);

    let reply = app.partner_admin("GET", "get-registered-webhooks", json!({"partnerId": PARTNER})).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert_eq!(reply.body, json!(["WB_Application_Created", "WB_Customer_Created"]));

    let views = app.partner_view(PARTNER).await;
    assert_eq!(views.len(), 1, "{views:#?}");
    let view = &views[0];
    assert_eq!(view["webhookUri"], "https://partner.example.com/webhooks/plexe");
    assert_eq!(view["webhooks"], json!(["WB_Customer_Created", "WB_Application_Created"]));
    assert_eq!(view["isActive"], true);
    assert_eq!(view["subscribeAll"], false);
    assert_eq!(view["lastDeliveryStatus"], Value::Null);
    assert_eq!(view["lastDeliveryAt"], Value::Null);
    let masked = view["secret"].as_str().expect("a masked secret");
    assert!(!masked.contains(SECRET) && masked.ends_with(&SECRET[SECRET.len() - 4..]), "{masked}");
    assert!(!serde_json::to_string(&views).unwrap_or_default().contains(SECRET));

    // The same subscription through the bus: one implementation.
    let reply = app.admin(json!({"$type": "GetWebhookSubscriptionListQuery", "partnerId": PARTNER})).await;
    let page = reply.assert_ok("Webhook subscriptions retrieved successfully");
    assert_eq!(page["totalCount"], 1);
    assert_eq!(page["items"][0]["id"], view["id"]);

    // Another owner sees none of it.
    assert!(app.partner_view(OTHER_PARTNER).await.is_empty());
    let reply = app.partner_admin("GET", "get-registered-webhooks", json!({"partnerId": OTHER_PARTNER})).await;
    assert_eq!(reply.body, json!([]));
}

#[tokio::test]
async fn register_with_an_id_changes_that_subscription_of_the_owner_only() {
    let app = TestApp::spawn().await;
    assert_empty_success(&app.partner_admin("POST", "register", seed_example()).await);
    let id = app.partner_view(PARTNER).await[0]["id"].as_str().expect("id").to_owned();

    let change = json!({"id": id, "partnerId": PARTNER, "webhooks": ["WB_Loan_Opened"], "isActive": false});
    assert_empty_success(&app.partner_admin("POST", "register", change).await);
    let views = app.partner_view(PARTNER).await;
    assert_eq!(views.len(), 1, "updated, not added: {views:#?}");
    assert_eq!(views[0]["webhooks"], json!(["WB_Loan_Opened"]));
    assert_eq!(views[0]["isActive"], false);
    assert_eq!(views[0]["webhookUri"], "https://partner.example.com/webhooks/plexe", "untouched fields kept");

    for (body, why) in [
        (json!({"id": id, "partnerId": OTHER_PARTNER, "webhooks": ["WB_Send_Sms"]}), "another owner's"),
        (json!({"id": "1b6d0c52-3f7e-4a59-8d1c-2e4f6a8b0c1d", "partnerId": PARTNER}), "unknown"),
    ] {
        let reply = app.partner_admin("POST", "register", body).await;
        reply.assert_error(404, "Subscription not found");
        assert!(reply.has_error("Subscription not found"), "{why}: {:#}", reply.body);
    }
    assert_eq!(app.partner_view(PARTNER).await[0]["webhooks"], json!(["WB_Loan_Opened"]), "nothing changed");
}

#[tokio::test]
async fn a_bound_token_acts_for_its_owner_only() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let token = app.partner_token(PARTNER, &["subscriptions:read", "subscriptions:write"]).await;
    let token = Some(token.as_str());

    // No owner named: the token's.
    let body = json!({"webhookUri": receiver.url, "secret": SECRET, "webhooks": ["WB_Send_Sms"]});
    assert_empty_success(&app.partner(token, "POST", "register", body).await);
    let reply = app.partner(token, "GET", "subscription", json!({})).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    let id = reply.body[0]["id"].as_str().expect("its subscription").to_owned();
    assert_eq!(app.partner_view(PARTNER).await.len(), 1);

    // Another owner named: as if it did not exist, and nothing is written for it.
    let theirs = json!({"partnerId": OTHER_PARTNER});
    let other_body = json!({"partnerId": OTHER_PARTNER, "webhookUri": receiver.url, "webhooks": ["WB_Send_Sms"]});
    for (method, route, body) in [
        ("POST", "register", other_body),
        ("POST", "update-all", theirs.clone()),
        ("POST", "unregister", theirs.clone()),
        ("POST", "update-webhook-uri", json!({"partnerId": OTHER_PARTNER, "webhookUri": receiver.url})),
        ("POST", "generate-simulated-webhook", json!({"partnerId": OTHER_PARTNER, "eventName": "WB_Send_Sms"})),
        ("GET", "get-registered-webhooks", theirs.clone()),
        ("GET", "subscription", theirs.clone()),
    ] {
        let reply = app.partner(token, method, route, body).await;
        assert_eq!(reply.status, 404, "{route}: {:#}", reply.body);
        assert_eq!(reply.body["success"], false, "{route}: the envelope");
    }
    assert!(app.partner_view(OTHER_PARTNER).await.is_empty());

    // Another owner's subscription, named by id, does not exist for this token either.
    let other = json!({"partnerId": OTHER_PARTNER, "webhookUri": receiver.url, "webhooks": ["WB_Send_Sms"]});
    assert_empty_success(&app.partner_admin("POST", "register", other).await);
    let their_id = app.partner_view(OTHER_PARTNER).await[0]["id"].clone();
    let reply = app.partner(token, "POST", "register", json!({"id": their_id, "webhooks": ["WB_Send_Otp"]})).await;
    reply.assert_error(404, "Subscription not found");
    assert_eq!(app.partner_view(OTHER_PARTNER).await[0]["webhooks"], json!(["WB_Send_Sms"]));

    // Its own by id, with its partnerId spelled in upper case.
    let body = json!({"id": id, "partnerId": PARTNER.to_uppercase(), "webhooks": ["WB_Send_Otp"]});
    assert_empty_success(&app.partner(token, "POST", "register", body).await);
    assert_eq!(app.partner_view(PARTNER).await[0]["webhooks"], json!(["WB_Send_Otp"]));

    // A read-only token reads but does not write.
    let reader = app.partner_token(PARTNER, &["subscriptions:read"]).await;
    let reply = app.partner(Some(&reader), "GET", "get-registered-webhooks", json!({})).await;
    assert_eq!(reply.body, json!(["WB_Send_Otp"]), "{:#}", reply.body);
    let reply = app.partner(Some(&reader), "POST", "update-all", json!({})).await;
    assert_eq!(reply.status, 403, "{:#}", reply.body);
    assert_eq!(app.partner_view(PARTNER).await[0]["subscribeAll"], false);
}

#[tokio::test]
async fn owner_wide_routes_change_every_subscription_and_succeed_empty_for_an_owner_without_one() {
    let app = TestApp::spawn().await;
    let owner = json!({"partnerId": PARTNER});
    assert_empty_success(&app.partner_admin("POST", "update-all", owner.clone()).await);
    let new_uri = json!({"partnerId": PARTNER, "webhookUri": "https://partner.example.com/v2"});
    assert_empty_success(&app.partner_admin("POST", "update-webhook-uri", new_uri.clone()).await);
    assert_empty_success(&app.partner_admin("POST", "unregister", owner.clone()).await);
    assert_eq!(app.count_rows("subscriptions").await, 0, "nothing is created");

    for events in [["WB_Send_Sms"], ["WB_Send_Otp"]] {
        let body = json!({"partnerId": PARTNER, "webhookUri": "https://partner.example.com/v1", "webhooks": events});
        assert_empty_success(&app.partner_admin("POST", "register", body).await);
    }
    assert_empty_success(&app.partner_admin("POST", "update-webhook-uri", new_uri).await);
    assert_empty_success(&app.partner_admin("POST", "update-all", owner.clone()).await);
    let views = app.partner_view(PARTNER).await;
    assert_eq!(views.len(), 2);
    for view in &views {
        assert_eq!(view["webhookUri"], "https://partner.example.com/v2");
        assert_eq!(view["subscribeAll"], true);
    }
    let reply = app.partner_admin("GET", "get-registered-webhooks", owner.clone()).await;
    let names = reply.body.as_array().cloned().unwrap_or_default();
    assert!(names.len() > 20 && names.contains(&json!("WB_Loan_Closed")), "every event: {names:?}");

    // Unregister: the listed events off, then with none listed every subscription deactivated.
    let body =
        json!({"partnerId": PARTNER, "webhookUri": "https://partner.example.com/v3", "webhooks": ["WB_Send_Sms"]});
    assert_empty_success(&app.partner_admin("POST", "register", body).await);
    assert_eq!(app.partner_view(PARTNER).await.len(), 3);
    let views = app.partner_view(PARTNER).await;
    let id = views.iter().find(|v| v["subscribeAll"] == false).expect("the third")["id"].clone();
    let body = json!({"id": id, "partnerId": PARTNER, "webhooks": ["WB_Send_Sms"]});
    assert_empty_success(&app.partner_admin("POST", "unregister", body).await);
    let views = app.partner_view(PARTNER).await;
    let third = views.iter().find(|v| v["id"] == id).expect("still there");
    assert_eq!(third["webhooks"], json!([]));
    assert_empty_success(&app.partner_admin("POST", "unregister", owner).await);
    assert!(app.partner_view(PARTNER).await.iter().all(|v| v["isActive"] == false));
}

#[tokio::test]
async fn a_simulated_webhook_reaches_the_partner_and_the_read_route_shows_the_delivery() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    // A Standard Webhooks secret, so that the reference library verifies the signature.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = json!({"partnerId": PARTNER, "webhookUri": receiver.url, "secret": SECRET,
                      "webhooks": ["WB_Customer_Created"]});
    assert_empty_success(&app.partner_admin("POST", "register", body).await);
    let body = json!({"partnerId": PARTNER, "eventName": "WB_Customer_Created"});
    assert_empty_success(&app.partner_admin("POST", "generate-simulated-webhook", body).await);

    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].body["simulated"], true);
    assert_eq!(got[0].body["eventName"], "WB_Customer_Created");
    assert!(got[0].verify(SECRET), "signed with the partner's secret");
    let shown = within(WAIT, || async {
        let views = app.partner_view(PARTNER).await;
        views[0]["lastDeliveryStatus"] == "Delivered" && views[0]["lastDeliveryAt"].is_string()
    })
    .await;
    assert!(shown.is_some(), "{:#?}", app.partner_view(PARTNER).await);

    let body = json!({"partnerId": PARTNER, "eventName": "WB_Not_An_Event"});
    let reply = app.partner_admin("POST", "generate-simulated-webhook", body).await;
    assert_eq!(reply.status, 422, "{:#}", reply.body);
}

#[tokio::test]
async fn errors_answer_the_envelope_with_their_status_and_write_nothing() {
    let app = TestApp::spawn().await;
    let reply = app.partner(None, "POST", "register", seed_example()).await;
    reply.assert_error(401, "Unauthorized");
    let reply = app.partner(Some("not-a-token"), "GET", "subscription", json!({"partnerId": PARTNER})).await;
    assert_eq!(reply.status, 401, "{:#}", reply.body);

    let response = app
        .client
        .post(format!("{}/api/Webhook/register", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("answers");
    let reply = crate::support::into_reply(response).await;
    assert_eq!(reply.status, 400, "{:#}", reply.body);
    assert_eq!(reply.body["success"], false);

    let cases = [
        (json!({"colour": "red"}), "colour"),
        (json!({"partnerId": "not-a-guid", "webhookUri": "https://partner.example.com/x"}), "partnerId"),
        (json!({"partnerId": PARTNER, "webhookUri": "https://partner.example.com/x", "secret": "short"}), "secret"),
        (
            json!({"partnerId": PARTNER, "webhookUri": "https://partner.example.com/x", "webhooks": ["WB_Nope"]}),
            "WB_Nope",
        ),
        (json!({"partnerId": PARTNER, "webhookUri": 7}), "webhookUri"),
        (json!({"partnerId": PARTNER, "id": "not-a-guid"}), "id"),
        (json!({"webhookUri": "https://partner.example.com/x"}), "partnerId"),
    ];
    for (body, names) in cases {
        let reply = app.partner_admin("POST", "register", body.clone()).await;
        assert_eq!(reply.status, 422, "{body}: {:#}", reply.body);
        assert!(reply.has_error(names), "{body}: expected '{names}' in {:#}", reply.body);
    }
    let reply = app.partner_admin("GET", "subscription", json!({})).await;
    assert_eq!(reply.status, 422, "an unbound token names the owner: {:#}", reply.body);
    let reply = app.partner_admin("POST", "update-webhook-uri", json!({"partnerId": PARTNER})).await;
    assert_eq!(reply.status, 422, "{:#}", reply.body);
    // A parameter left empty names nothing.
    let reply =
        app.partner_admin("GET", "get-registered-webhooks", json!({"partnerId": PARTNER, "customerId": ""})).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    // Another method: 405 naming the one the route takes, in the envelope.
    for (method, route, allow) in [("PATCH", "register", "POST"), ("DELETE", "subscription", "GET")] {
        let reply = app.call(method, &format!("/api/Webhook/{route}"), None, &[]).await;
        assert_eq!(reply.status, 405, "{method} {route}: {:#}", reply.body);
        assert_eq!(reply.headers.get("allow").and_then(|v| v.to_str().ok()), Some(allow));
        assert_eq!(reply.body["success"], false);
    }
    let reply = app.partner_admin("GET", "no-such-route", json!({})).await;
    assert_eq!(reply.status, 404, "{:#}", reply.body);
    assert_eq!(reply.body["success"], false);
    assert_eq!(app.count_rows("subscriptions").await, 0, "nothing half-written");
}
