//! Assignment, business hours and SLAs, end to end through the real `helpdesk` binary:
//! customers write on the webchat, the desk hands off, and tickets go to the agent with the
//! skill and the language, within capacity; a missed target escalates and notifies once.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const CAROL: &str = "carol-token-123456";

fn rules(dir: &Path, text: &str) -> String {
    let path = dir.join("rules.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn start(dir: &TempDir, rules_text: &str, extra: &[(&str, &str)]) -> Server {
    let path = rules(&dir.0, rules_text);
    let agents = format!("alice:agent:{ALICE},bob:agent:{BOB},carol:agent:{CAROL},sam:supervisor:sam-supervisor-token");
    let mut env = vec![
        ("HELPDESK_RULES", path.as_str()),
        ("HELPDESK_AGENTS", agents.as_str()),
        ("HELPDESK_SLA_CHECK_SECS", "1"),
    ];
    env.extend_from_slice(extra);
    Server::start(&dir.0, &env).await
}

const SUPERVISOR: &str = "sam-supervisor-token";

async fn put_agent(s: &Server, id: &str, body: Value) -> Value {
    let r = s
        .http
        .put(s.url(&format!("/agents/{id}")))
        .bearer_auth(SUPERVISOR)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

async fn set_available(s: &Server, token: &str, available: bool) -> Value {
    let r = s
        .http
        .patch(s.url("/me"))
        .bearer_auth(token)
        .json(&json!({ "available": available }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

/// The team of the issue: alice (billing, Chinese), bob (technical, English) and carol
/// (general, both languages, capacity 1). Sam is a supervisor who takes nothing.
async fn team(s: &Server) {
    put_agent(
        s,
        "alice",
        json!({"name": "Alice", "skills": ["billing"], "languages": ["zh"], "capacity": 5}),
    )
    .await;
    put_agent(
        s,
        "bob",
        json!({"name": "Bob", "skills": ["technical"], "languages": ["en"], "capacity": 5}),
    )
    .await;
    put_agent(
        s,
        "carol",
        json!({"name": "Carol", "skills": ["general"], "languages": ["zh", "en"], "capacity": 1}),
    )
    .await;
    put_agent(s, "sam", json!({"available": false})).await;
}

/// The ticket a customer's hand-off opened.
async fn ticket_of(s: &Server, customer_id: &str) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(t) = s.tickets_of(customer_id).await.first() {
            return t["id"].as_str().unwrap().to_string();
        }
        assert!(tokio::time::Instant::now() < deadline, "no ticket opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `check` holds for the ticket, and returns it.
async fn wait_ticket(s: &Server, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_ticket_for(s, id, what, PATIENCE, check).await
}

async fn wait_ticket_for(
    s: &Server,
    id: &str,
    what: &str,
    patience: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let (v, _) = s.ticket(id).await;
        if check(&v["ticket"]) {
            return v["ticket"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {:#}",
            v["ticket"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn assignee_of(s: &Server, id: &str, who: &str) -> Value {
    wait_ticket(s, id, &format!("not assigned to {who}"), |t| {
        t["assignee"] == who
    })
    .await
}

/// Holds for a while: a ticket that should wait stays unassigned across clock turns.
async fn stays_unassigned(s: &Server, id: &str) {
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (v, _) = s.ticket(id).await;
    assert_eq!(v["ticket"]["assignee"], Value::Null, "{:#}", v["ticket"]);
}

async fn hand_off(s: &Server, text: &str) -> String {
    let v = s.visitor().await;
    v.say(text).await;
    v.wait_for("handoff").await;
    ticket_of(s, &v.customer_id).await
}

#[tokio::test]
async fn tickets_go_to_the_agent_with_the_skill_and_the_language() {
    let dir = TempDir::new();
    let s = start(&dir, "", &[]).await;
    team(&s).await;

    let billing = hand_off(&s, "我被多扣款了两次，转人工").await;
    let t = assignee_of(&s, &billing, "alice").await;
    assert_eq!(t["language"], "zh");
    assert_eq!(t["assignment"]["reason"], "rule");
    assert!(t["assigned_at"].is_string());

    let fault = hand_off(
        &s,
        "The app crashes when I upload a photo. I want to talk to an agent",
    )
    .await;
    assert_eq!(assignee_of(&s, &fault, "bob").await["language"], "en");

    // Bob steps away: the next English fault report waits, and is his when he is back.
    let away = set_available(&s, BOB, false).await;
    assert_eq!(away["profile"]["available"], false);
    let waiting = hand_off(
        &s,
        "Login fails with error 502, please get me a real person",
    )
    .await;
    stays_unassigned(&s, &waiting).await;
    set_available(&s, BOB, true).await;
    let t = assignee_of(&s, &waiting, "bob").await;
    assert_eq!(t["assignment"]["reason"], "rebalance");

    let r = s.get("/agents", ALICE).await;
    assert_eq!(r.status(), StatusCode::OK);
    let agents: Value = r.json().await.unwrap();
    let bob = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "bob")
        .unwrap()
        .clone();
    assert_eq!(bob["open_tickets"], 2);
    assert_eq!(bob["skills"], json!(["technical"]));

    // Agents may not change profiles; bad profiles are clear errors.
    let r = s
        .http
        .put(s.url("/agents/alice"))
        .bearer_auth(ALICE)
        .json(&json!({"capacity": 50}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 403).await, "forbidden");
    for bad in [
        json!({"skills": ["cooking"]}),
        json!({"capacity": -1}),
        json!({"languages": ["fr"]}),
        json!({"capacity": 100000}),
    ] {
        let r = s
            .http
            .put(s.url("/agents/alice"))
            .bearer_auth(SUPERVISOR)
            .json(&bad)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(status == 400 || status == 422, "{bad}: {status}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["code"].is_string(), "{bad}: {v}");
    }
}

#[tokio::test]
async fn capacity_holds_and_freed_capacity_takes_the_urgent_ticket_first() {
    let dir = TempDir::new();
    let s = start(&dir, "", &[]).await;
    team(&s).await;

    let first = hand_off(&s, "你好，我想找人工客服聊聊").await;
    assignee_of(&s, &first, "carol").await;
    let second = hand_off(&s, "Hello, can I talk to a real person?").await;
    let urgent = hand_off(&s, "紧急！请转人工").await;
    stays_unassigned(&s, &second).await;
    let (u, _) = s.ticket(&urgent).await;
    assert_eq!(u["ticket"]["priority"], "urgent");
    assert_eq!(
        u["ticket"]["assignee"],
        Value::Null,
        "carol holds one at most"
    );

    let (_, version) = s.ticket(&first).await;
    let r = s
        .patch(&first, Some(version), json!({"status": "closed"}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let t = assignee_of(&s, &urgent, "carol").await;
    assert_eq!(t["assignment"]["reason"], "rebalance");
    stays_unassigned(&s, &second).await;

    // A person's choice wins over capacity, and says who made it.
    let (_, version) = s.ticket(&second).await;
    let r = s
        .patch(&second, Some(version), json!({"assignee": "carol"}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["assignment"]["reason"], "manual");
    assert_eq!(v["assignment"]["by"], "admin");
}

/// The admin token has no profile and takes nothing: it cannot make itself available, nor
/// can a supervisor give it a profile, so with every agent away a hand-off waits instead of
/// going to the administrator.
#[tokio::test]
async fn the_admin_token_takes_no_tickets() {
    let dir = TempDir::new();
    let s = start(&dir, "", &[]).await;
    team(&s).await;

    let r = s
        .http
        .patch(s.url("/me"))
        .bearer_auth(ADMIN)
        .json(&json!({"available": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 403).await, "admin_has_no_profile");
    let r = s
        .http
        .put(s.url("/agents/admin"))
        .bearer_auth(SUPERVISOR)
        .json(&json!({"available": true, "capacity": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 403).await, "admin_has_no_profile");
    let me: Value = s.get("/me", ADMIN).await.json().await.unwrap();
    assert_eq!(
        (&me["role"], &me["profile"]),
        (&json!("admin"), &Value::Null)
    );
    let agents: Value = s.get("/agents", ADMIN).await.json().await.unwrap();
    assert!(
        agents["agents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["id"] != "admin"),
        "{agents}"
    );

    for token in [ALICE, BOB, CAROL] {
        set_available(&s, token, false).await;
    }
    let waiting = hand_off(&s, "Hello, can I talk to a real person?").await;
    // Nor does the administrator's reply make the ticket theirs: it is answered, and waits.
    let r = s
        .post(
            &format!("/tickets/{waiting}/replies"),
            ADMIN,
            json!({"text": "我们正在处理"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    stays_unassigned(&s, &waiting).await;
    let (t, _) = s.ticket(&waiting).await;
    assert!(t["ticket"]["first_response_at"].is_string(), "{t}");
}

/// Locally the tokens name every agent: a profile for an id none names (a typo) is
/// refused, where it would have taken waiting tickets that no one can see.
#[tokio::test]
async fn a_profile_is_only_for_an_agent_a_token_names() {
    let dir = TempDir::new();
    let s = start(&dir, "", &[]).await;
    team(&s).await;
    for token in [ALICE, BOB, CAROL] {
        set_available(&s, token, false).await;
    }
    let waiting = hand_off(&s, "Hello, can I talk to a real person?").await;

    for typo in ["alcie", "王芳"] {
        let r = s
            .http
            .put(s.url(&format!("/agents/{typo}")))
            .bearer_auth(SUPERVISOR)
            .json(&json!({"available": true, "capacity": 10}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r, 404).await, "unknown_agent");
    }
    let agents: Value = s.get("/agents", SUPERVISOR).await.json().await.unwrap();
    let ids: Vec<&str> = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert!(
        !ids.contains(&"alcie") && !ids.contains(&"王芳"),
        "{agents}"
    );
    // Nor is a ticket given by hand to a name no token names, or to the administrator.
    let (_, version) = s.ticket(&waiting).await;
    for (to, code) in [
        ("alcie", "unknown_agent"),
        ("admin", "admin_has_no_profile"),
    ] {
        let r = s
            .patch(&waiting, Some(version), json!({"assignee": to}))
            .await;
        assert_eq!(error_code(r, 422).await, code);
    }
    assert_eq!(s.ticket(&waiting).await.1, version);
    stays_unassigned(&s, &waiting).await;

    let alice = put_agent(&s, "alice", json!({"available": true, "capacity": 10})).await;
    assert_eq!(alice["id"], "alice");
}

/// An agent taken out of `HELPDESK_AGENTS` is set away at the next start: nobody can sign
/// in as them, so a hand-off does not go to them.
#[tokio::test]
async fn an_agent_no_longer_configured_is_set_away_at_start() {
    let dir = TempDir::new();
    let s = start(&dir, "", &[]).await;
    team(&s).await;
    s.kill().await;

    let without_carol = format!("alice:agent:{ALICE},bob:agent:{BOB},sam:supervisor:{SUPERVISOR}");
    let s = start(&dir, "", &[("HELPDESK_AGENTS", without_carol.as_str())]).await;
    let carol: Value = s
        .get("/agents/carol", SUPERVISOR)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(carol["available"], false, "{carol}");
    assert_eq!(
        carol["capacity"], 1,
        "the rest of the profile is kept: {carol}"
    );
    let alice: Value = s
        .get("/agents/alice", SUPERVISOR)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(alice["available"], true, "{alice}");
    // The reads say which profile is removed, so the console does not offer an edit the
    // desk refuses.
    assert_eq!(carol["removed"], true, "{carol}");
    assert_eq!(alice["removed"], false, "{alice}");
    let listed: Value = s.get("/agents", SUPERVISOR).await.json().await.unwrap();
    let removed: Vec<&str> = listed["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["removed"] == true)
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert_eq!(removed, ["carol"], "{listed}");
    let r = s
        .http
        .put(s.url("/agents/carol"))
        .bearer_auth(SUPERVISOR)
        .json(&json!({"capacity": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 404).await, "unknown_agent");
    for token in [ALICE, BOB] {
        set_available(&s, token, false).await;
    }
    let waiting = hand_off(&s, "Hello, can I talk to a real person?").await;
    stays_unassigned(&s, &waiting).await;
}

#[tokio::test]
async fn a_missed_first_response_escalates_and_notifies_once() {
    let dir = TempDir::new();
    let hook = FakeWebhook::start().await;
    let agent_hook = FakeWebhook::start().await;
    let s = start(
        &dir,
        "[sla.normal]\nfirst_response = \"20s\"\nescalate_on_breach = true\n",
        &[
            ("SUPERVISOR_WEBHOOK_URL", hook.url.as_str()),
            ("AGENT_WEBHOOK_URL", agent_hook.url.as_str()),
        ],
    )
    .await;
    team(&s).await;

    let answered = hand_off(&s, "我被多扣款了两次，转人工").await;
    let t = assignee_of(&s, &answered, "alice").await;
    assert!(t["sla"]["first_response_due"].is_string(), "{t:#}");
    let r = s
        .post(
            &format!("/tickets/{answered}/replies"),
            ALICE,
            json!({"text": "您好，我来帮您查一下"}),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "{}",
        r.text().await.unwrap()
    );

    let ignored = hand_off(&s, "我被重复收费了，转人工").await;
    // The 20 s target passes unanswered: the next turn of the clock escalates.
    let t = wait_ticket_for(
        &s,
        &ignored,
        "not escalated",
        Duration::from_secs(40),
        |t| t["status"] == "escalated",
    )
    .await;
    assert_eq!(t["escalation_reason"], "sla_breach:first_response");
    assert_eq!(t["sla"]["breaches"][0]["target"], "first_response");

    // Several more turns of the clock: still one notice, and none for the answered ticket.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let notices = hook.received.lock().unwrap().clone();
    assert_eq!(notices.len(), 1, "{notices:#?}");
    assert_eq!(notices[0]["event"], "ticket.sla_breached");
    assert_eq!(notices[0]["ticket_id"], ignored.as_str());
    assert_eq!(notices[0]["reason"], "sla_breach:first_response");
    let (t, _) = s.ticket(&answered).await;
    assert_eq!(t["ticket"]["status"], "open");
    assert!(t["ticket"]["sla"]["breaches"]
        .as_array()
        .unwrap()
        .is_empty());

    // The SLA report counts one target met and one breached.
    let r = s.get("/reports/sla", SUPERVISOR).await;
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.unwrap();
    let normal = &report["priorities"][0];
    assert_eq!(normal["priority"], "normal", "{report:#}");
    assert_eq!(normal["tickets"], 2);
    assert_eq!(normal["first_response"]["met"], 1);
    assert_eq!(normal["first_response"]["breached"], 1);
    assert_eq!(normal["first_response"]["attainment"], 0.5);
    assert!(normal["median_first_response_secs"].is_number());
    let r = s
        .get("/reports/sla?from=2026-02-01&to=2026-01-01", SUPERVISOR)
        .await;
    assert_eq!(error_code(r, 422).await, "invalid_period");
    let r = s.get("/reports/sla", ALICE).await;
    assert_eq!(error_code(r, 403).await, "forbidden");

    // Alice was told of both of her tickets, once each.
    let told = agent_hook.wait_for(2).await;
    assert_eq!(told.len(), 2, "{told:#?}");
    assert!(told
        .iter()
        .all(|n| n["event"] == "ticket.assigned" && n["agent"] == "alice"));
}

/// A visitor writes again after their ticket was resolved: it reopens to its agent, who is
/// told (`ticket.reopened` on the agent webhook), and counts against their capacity again.
/// Resolved once more while that agent is away, the next follow-up reopens it to whoever
/// can take it, by the rule.
#[tokio::test]
async fn a_reopened_ticket_goes_back_to_its_agent_or_to_whoever_can_take_it() {
    let dir = TempDir::new();
    let agent_hook = FakeWebhook::start().await;
    let s = start(&dir, "", &[("AGENT_WEBHOOK_URL", agent_hook.url.as_str())]).await;
    team(&s).await;
    let v = s.visitor().await;
    v.say("我的账单多扣了钱，转人工").await;
    v.wait_for("handoff").await;
    let id = ticket_of(&s, &v.customer_id).await;
    assignee_of(&s, &id, "alice").await;
    let resolve = || async {
        let (_, version) = s.ticket(&id).await;
        let r = s
            .patch(&id, Some(version), json!({"status": "resolved"}))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    };
    resolve().await;

    let again = v.say("钱还是没退回来，转人工").await;
    let t = wait_ticket(&s, &id, "not reopened", |t| t["status"] == "open").await;
    assert_eq!(t["assignee"], "alice", "{t:#}");
    assert_eq!(t["reopened_by"], again.as_str(), "{t:#}");
    let told = agent_hook.wait_for(2).await;
    assert_eq!(told[0]["event"], "ticket.assigned", "{told:#?}");
    assert_eq!(told[1]["event"], "ticket.reopened", "{told:#?}");
    assert_eq!(told[1]["agent"], "alice");
    assert_eq!(told[1]["ticket_id"], id.as_str());
    assert_eq!(told[1]["reopened_by"], again.as_str());
    let r = s.get("/agents/alice", SUPERVISOR).await;
    let alice: Value = r.json().await.unwrap();
    assert_eq!(alice["open_tickets"], 1, "{alice:#}");

    // Alice away: the next reopen goes to carol (general, both languages), by the rule.
    resolve().await;
    put_agent(&s, "alice", json!({"available": false})).await;
    put_agent(&s, "carol", json!({"skills": ["general", "billing"]})).await;
    v.say("还是不行，转人工").await;
    let t = assignee_of(&s, &id, "carol").await;
    assert_eq!(t["status"], "open");
    assert_eq!(t["assignment"]["reason"], "rebalance");
    let told = agent_hook.wait_for(3).await;
    assert_eq!(told.len(), 3, "{told:#?}");
    assert_eq!(told[2]["event"], "ticket.assigned");
    assert_eq!(told[2]["agent"], "carol");
}

#[tokio::test]
async fn out_of_hours_a_hand_off_says_when_the_team_is_back() {
    let dir = TempDir::new();
    // Every day is a working day, but today and tomorrow (UTC) are holidays: the team is
    // back the day after tomorrow at 09:00, whenever this runs.
    let today = std::process::Command::new("date")
        .args(["-u", "+%F"])
        .output()
        .unwrap();
    let today = String::from_utf8(today.stdout).unwrap().trim().to_string();
    let tomorrow = std::process::Command::new("date")
        .args(["-u", "-d", "tomorrow", "+%F"])
        .output()
        .unwrap();
    let tomorrow = String::from_utf8(tomorrow.stdout)
        .unwrap()
        .trim()
        .to_string();
    let s = start(
        &dir,
        &format!(
            "[business_hours]\ntimezone = \"UTC\"\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\nopen = \"09:00\"\nclose = \"18:00\"\nholidays = [\"{today}\", \"{tomorrow}\"]\n"
        ),
        &[],
    )
    .await;

    let v = s.visitor().await;
    v.say("我被多扣款了两次，转人工").await;
    let notes = v.wait_for_count("handoff", 2).await;
    let away = notes
        .iter()
        .find(|m| m["text"].as_str().unwrap().contains("我们已下班"))
        .unwrap_or_else(|| panic!("{notes:#?}"));
    assert!(
        away["text"].as_str().unwrap().contains("9:00 后回复您"),
        "{away}"
    );
    // Resolved, then reopened by the visitor's follow-up out of hours: no second hand-off
    // (the conversation goes on), but they are told again when the team is back.
    let id = away["ticket_id"].as_str().unwrap().to_string();
    let r = s.patch_current(&id, json!({"status": "resolved"})).await;
    assert_eq!(r.status(), 200);
    v.say("还是没退回来，转人工").await;
    let notes = v.wait_for_count("handoff", 3).await;
    assert_eq!(notes.len(), 3, "{notes:#?}");
    assert!(
        notes[2]["text"].as_str().unwrap().contains("我们已下班"),
        "{notes:#?}"
    );
    assert_eq!(notes[2]["ticket_id"], json!(id));
    let (view, _) = s.ticket(&id).await;
    assert_eq!(view["ticket"]["status"], "open", "{view}");

    let en = s.visitor().await;
    en.say("I was charged twice, I want to talk to an agent")
        .await;
    let notes = en.wait_for_count("handoff", 2).await;
    assert!(
        notes.iter().any(|m| m["text"]
            .as_str()
            .unwrap()
            .contains("We'll reply after 9:00 on")),
        "{notes:#?}"
    );

    // An answer from the knowledge base is the same as in hours.
    let q = s.visitor().await;
    q.say("我忘记密码了，怎么重置？").await;
    let answer = q.wait_for("auto_reply").await;
    assert!(!answer["text"].as_str().unwrap().contains("下班"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(q
        .conversation()
        .await
        .iter()
        .all(|m| m["kind"] != "handoff"));
}
