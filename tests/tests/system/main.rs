//! System tests: the appliance's parts as separate processes, with real peers.

mod admin_console;
mod buildroot;
mod cache;
mod cart;
mod central_console;
mod central_publish;
mod central_share;
mod central_usage;
mod dns;
mod dns_lan;
mod dns_offline;
mod durability;
mod firmware;
mod fleet_trust;
mod hardening;
mod hub;
mod image;
mod release;
mod sync;
mod systemd;
mod update;
mod update_kill;
mod update_peers;
mod update_rollout;
mod ut1_import;
