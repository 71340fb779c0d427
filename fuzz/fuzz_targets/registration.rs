//! RFC 7591 registration bodies: any bytes, as `POST /register` reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_authd::config::Config;
use mcp_authd::oauth::client::RegistrationRequest;
use mcp_authd::oauth::redirect;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<RegistrationRequest>(data) else {
        return;
    };
    let config = Config::default();
    if let Ok(metadata) = request.validate(&config) {
        // What is accepted is what may be stored and echoed: every redirect URI passed the rules
        // (or is the out-of-band marker of a device-code client, never redirected to).
        for uri in &metadata.redirect_uris {
            let oob = uri == redirect::OOB;
            assert!(oob || redirect::validate_registered(uri).is_ok(), "{uri:?}");
            assert!(redirect::find_match(&metadata.redirect_uris, redirect::OOB).is_none());
        }
        let _ = serde_json::to_vec(&metadata).expect("accepted metadata serializes");
    }
});
