//! httpd → reversed AJP worker → reversed-agent --backend → Tomcat's AJP
//! connector: a static file and a JSP come back intact.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn tomcat_through_reversed_ajp() {
    if !tomcat_available() {
        return;
    }
    let tc = Tomcat::start();
    let node = RNode::new("tc1", "ajp", "127.0.0.2:1", 6);
    let b = Httpd::builder(Mpm::Event);
    let secret = b.secret("secret", "tomcat test secret, long enough");
    let h = b.conf(&node.conf(&format!("secret={} wait=3s", secret.display()))).conf(STATUS_LOCATION).start();
    let backend = format!("127.0.0.1:{}", tc.ajp_port);
    let _a = AgentArgs::backend(&node.name, Some(&secret), &node.range(), &backend).idle(4).spawn(Some(h.dir()));
    wait_all_idle(&h, &["tc1"], Duration::from_secs(20));

    let r = get(&node.url_on(&h, "hello.txt")).unwrap();
    assert_eq!(r.status, 200, "hello.txt: {} {:?}", r.status, r.text());
    assert_eq!(r.text(), TOMCAT_HELLO_TXT);

    // The first JSP request compiles it: allow time.
    let r = get_with(&client(Duration::from_secs(60)), &node.url_on(&h, "hello.jsp")).unwrap();
    assert_eq!(r.status, 200, "hello.jsp: {} {:?}", r.status, r.text());
    assert_eq!(r.text().trim(), "answer=42 method=GET");
    let r = post(&node.url_on(&h, "hello.jsp"), b"a=1&b=2").unwrap();
    assert_eq!(r.status, 200, "POST hello.jsp: {} {:?}", r.status, r.text());
    assert_eq!(r.text().trim(), "answer=42 method=POST");

    let r = get(&node.url_on(&h, "no-such-file.txt")).unwrap();
    assert_eq!(r.status, 404, "Tomcat's 404 passes through");

    // Some concurrency, every answer intact.
    let ths: Vec<_> = (0..8)
        .map(|i| {
            let u_txt = node.url_on(&h, "hello.txt");
            let u_jsp = node.url_on(&h, "hello.jsp");
            std::thread::spawn(move || {
                let c = client(Duration::from_secs(30));
                for j in 0..6 {
                    let (u, want) = if (i + j) % 2 == 0 {
                        (&u_txt, TOMCAT_HELLO_TXT.to_string())
                    } else {
                        (&u_jsp, "answer=42 method=GET\n".to_string())
                    };
                    let r = get_with(&c, u).unwrap_or_else(|e| panic!("{u}: {e}"));
                    assert_eq!((r.status, r.text()), (200, want), "{u}");
                }
            })
        })
        .collect();
    for t in ths {
        t.join().expect("a concurrent Tomcat request failed");
    }
    let st = status_json(&h).unwrap();
    assert!(st.accepted("tc1") > 0 && st.rejected("tc1") == 0, "{st:?}");
}
