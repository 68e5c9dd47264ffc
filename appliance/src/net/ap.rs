//! hostapd's configuration, rendered from `[net.ap]` at start (systemd's
//! `cartable-hostapd.service` reads it): the cart's radio joined to the LAN bridge,
//! WPA2, WPA3 (SAE) or both, in the country's regulatory domain.
//!
//! `config::Passphrase`, `Ssid`, `Country` and `Channel` already refuse what hostapd
//! would refuse, so `check-config` says it before hostapd fails at boot.

use crate::config::{ApConfig, ApSecurity, IfName};

/// The file's text. `None` without a passphrase (check-config refuses that already).
pub(crate) fn render(ap: &ApConfig, bridge: &IfName) -> Option<String> {
    let pass = ap.passphrase.as_ref()?;
    let mut out = format!(
        "# Written by cartable from [net.ap]; edit the box's configuration, not this file.\n\
         interface={iface}\n\
         bridge={bridge}\n\
         driver=nl80211\n\
         ctrl_interface=/run/hostapd\n\
         ssid2={ssid}\n\
         utf8_ssid=1\n\
         country_code={country}\n\
         ieee80211d=1\n\
         hw_mode={mode}\n\
         channel={channel}\n\
         ieee80211n=1\n\
         wmm_enabled=1\n\
         auth_algs=1\n\
         ignore_broadcast_ssid=0\n\
         ap_isolate=1\n\
         max_num_sta=64\n\
         wpa=2\n\
         rsn_pairwise=CCMP\n\
         wpa_passphrase={pass}\n",
        iface = ap.interface,
        // In hex: any byte of the name, no quoting to get wrong.
        ssid = ap
            .ssid
            .0
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        country = ap.country.0,
        mode = ap.channel.hw_mode(),
        channel = ap.channel.0,
        pass = pass.0,
    );
    let (mgmt, ieee80211w) = match ap.security {
        ApSecurity::Wpa2 => ("WPA-PSK", 0),
        ApSecurity::Wpa3 => ("SAE", 2),
        ApSecurity::Wpa2Wpa3 => ("WPA-PSK SAE", 1),
    };
    out.push_str(&format!("wpa_key_mgmt={mgmt}\nieee80211w={ieee80211w}\n"));
    if ap.security != ApSecurity::Wpa2 {
        // Both SAE methods (hunting-and-pecking and hash-to-element): older WPA3
        // clients know only the first.
        out.push_str("sae_pwe=2\nsae_require_mfp=1\n");
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Passphrase;

    #[test]
    fn wpa2_wpa3_transition_is_rendered_with_the_bridge() {
        let ap = ApConfig {
            enabled: true,
            passphrase: Some(Passphrase::try_from("cartable-cm2".to_string()).unwrap()),
            ..ApConfig::default()
        };
        let text = render(&ap, &IfName("br-cart".into())).unwrap();
        assert!(text.contains("bridge=br-cart\n"));
        assert!(text.contains("wpa_key_mgmt=WPA-PSK SAE\n"));
        assert!(text.contains("ieee80211w=1\n"));
        assert!(text.contains("country_code=FR\n"));
        assert!(text.contains("hw_mode=g\nchannel=6\n"));
        assert!(render(&ApConfig::default(), &IfName("br".into())).is_none());
    }
}
