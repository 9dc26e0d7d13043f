//! Organizations, pagination, retention and configuration (wire doc §2.7, §2.8, §4).

use serde_json::{Value, json};

use crate::helpers::{TestApp, body};

#[tokio::test]
async fn an_organization_has_every_key_the_sdks_require() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/organizations",
            &json!({"name": "Acme", "domain_data": [{"domain": "acme.test", "state": "verified"}], "external_id": "acme-1", "metadata": {"tier": "gold"}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let created = body(response).await;
    for key in [
        "object",
        "id",
        "name",
        "domains",
        "metadata",
        "external_id",
        "allow_profiles_outside_organization",
        "created_at",
        "updated_at",
    ] {
        assert!(created.get(key).is_some(), "missing {key}");
    }
    assert_eq!(created["object"], "organization");
    assert_eq!(created["domains"][0]["domain"], "acme.test");
    assert_eq!(created["domains"][0]["object"], "organization_domain");
    assert_eq!(created["domains"][0]["organization_id"], created["id"]);
    let timestamp = created["created_at"].as_str().unwrap_or_default();
    assert!(
        timestamp.len() == 24 && timestamp.ends_with('Z') && &timestamp[19..20] == ".",
        "{timestamp}"
    );

    let id = created["id"].as_str().unwrap_or_default();
    assert_eq!(
        body(app.get(&format!("/organizations/{id}")).await).await,
        created
    );

    let conflict = app
        .post(
            "/organizations",
            &json!({"name": "Other", "external_id": "acme-1"}),
        )
        .await;
    assert_eq!(conflict.status(), 409);
    assert_eq!(body(conflict).await["errors"][0]["field"], "external_id");
}

#[tokio::test]
async fn list_pages_with_after_and_before_until_after_is_null() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.create_organization(&format!("Org {i}")).await);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    ids.reverse(); // newest first is the default order

    let mut seen = Vec::new();
    let mut path = "/organizations?limit=2".to_owned();
    loop {
        let page = body(app.get(&path).await).await;
        assert_eq!(page["object"], "list");
        seen.extend(
            page["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o["id"].as_str().map(str::to_owned)),
        );
        match page["list_metadata"]["after"].as_str() {
            Some(after) => path = format!("/organizations?limit=2&after={after}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    let ascending = body(app.get("/organizations?order=asc&limit=100").await).await;
    let ascending: Vec<&str> = ascending["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["id"].as_str())
        .collect();
    assert_eq!(
        ascending,
        ids.iter().rev().map(String::as_str).collect::<Vec<_>>()
    );

    let before = body(
        app.get(&format!("/organizations?limit=2&before={}", ids[3]))
            .await,
    )
    .await;
    let before: Vec<&str> = before["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["id"].as_str())
        .collect();
    assert_eq!(before, [ids[1].as_str(), ids[2].as_str()]);
}

#[tokio::test]
async fn list_filters_by_domain_and_search() {
    let app = TestApp::spawn().await;
    app.post(
        "/organizations",
        &json!({"name": "Acme Corp", "domain_data": [{"domain": "acme.test"}]}),
    )
    .await;
    app.post(
        "/organizations",
        &json!({"name": "Globex", "domains": ["globex.test"]}),
    )
    .await;
    let names = |page: Value| -> Vec<String> {
        page["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["name"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        names(body(app.get("/organizations?domains=globex.test").await).await),
        ["Globex"]
    );
    assert_eq!(
        names(body(app.get("/organizations?domains=nope.test,acme.test").await).await),
        ["Acme Corp"]
    );
    assert_eq!(
        names(body(app.get("/organizations?search=acme").await).await),
        ["Acme Corp"]
    );
}

#[tokio::test]
async fn update_and_delete() {
    let app = TestApp::spawn().await;
    let id = app.create_organization("Acme").await;
    let updated = body(
        app.put(
            &format!("/organizations/{id}"),
            &json!({"name": "Acme Inc", "metadata": {"k": "v"}}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (updated["name"].clone(), updated["metadata"]["k"].clone()),
        (json!("Acme Inc"), json!("v"))
    );
    assert_eq!(
        app.put(&format!("/organizations/{id}"), &json!({"name": 5}))
            .await
            .status(),
        422
    );

    let deleted = app
        .client
        .delete(app.url(&format!("/organizations/{id}")))
        .bearer_auth(crate::helpers::ADMIN_KEY)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    assert_eq!(app.get(&format!("/organizations/{id}")).await.status(), 404);
    let response = app
        .create_event(&id, &crate::helpers::event("a.b"), None)
        .await;
    assert_eq!(
        response.status(),
        404,
        "a deleted organization takes no new events"
    );
}

#[tokio::test]
async fn retention_accepts_both_body_forms_and_refuses_others() {
    let app = TestApp::spawn().await;
    let id = app.create_organization("Acme").await;
    let path = format!("/organizations/{id}/audit_logs_retention");
    assert_eq!(
        body(app.get(&path).await).await,
        json!({"retention_period_in_days": null})
    );
    assert_eq!(
        body(
            app.put(&path, &json!({"retention_period": "2_YEARS"}))
                .await
        )
        .await,
        json!({"retention_period_in_days": 730})
    );
    assert_eq!(
        body(
            app.put(&path, &json!({"retention_period_in_days": 90}))
                .await
        )
        .await,
        json!({"retention_period_in_days": 90})
    );
    assert_eq!(
        body(app.get(&path).await).await,
        json!({"retention_period_in_days": 90})
    );
    let refused = app
        .put(&path, &json!({"retention_period_in_days": 31}))
        .await;
    assert_eq!(refused.status(), 422);
    assert_eq!(
        body(refused).await["errors"][0]["field"],
        "retention_period_in_days"
    );
    assert_eq!(
        app.get("/organizations/org_01HZZZZZZZZZZZZZZZZZZZZZZZ/audit_logs_retention")
            .await
            .status(),
        404
    );

    let configuration = body(
        app.get(&format!("/organizations/{id}/audit_log_configuration"))
            .await,
    )
    .await;
    assert_eq!(
        configuration,
        json!({"organization_id": id, "retention_period_in_days": 90, "state": "active"})
    );
}

#[tokio::test]
async fn an_organization_is_found_by_its_external_id() {
    let app = TestApp::spawn().await;
    let created = body(
        app.post(
            "/organizations",
            &json!({"name": "Acme", "external_id": "acme-42"}),
        )
        .await,
    )
    .await;
    app.create_organization("Other").await;
    let found = app.get("/organizations/external_id/acme-42").await;
    assert_eq!(found.status(), 200);
    let found = body(found).await;
    assert_eq!(found["id"], created["id"]);
    assert_eq!(found["external_id"], "acme-42");
    assert_eq!(found["object"], "organization");

    let missing = app.get("/organizations/external_id/acme-43").await;
    assert_eq!(missing.status(), 404);
    let message = body(missing).await["message"].clone();
    assert!(
        message.as_str().is_some_and(|m| m.contains("acme-43")),
        "{message}"
    );

    // A deleted organization gives its external id up.
    let id = created["id"].as_str().expect("id");
    let deleted = app
        .client
        .delete(app.url(&format!("/organizations/{id}")))
        .bearer_auth(crate::helpers::ADMIN_KEY)
        .send()
        .await
        .expect("request");
    assert!(deleted.status().is_success());
    assert_eq!(
        app.get("/organizations/external_id/acme-42").await.status(),
        404
    );
}
