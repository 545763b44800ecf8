//! Integration tests of the WeChat simulator: each test starts its own `wxsim` on port 0, talks
//! HTTP to it as a WeChat client would, and checks the reply and the counters. Time moves with
//! the simulator's virtual clock, never with sleeps.

mod control;
mod echo;
mod faults;
mod helpers;
mod media;
mod quota;
mod send_mp;
mod send_oa;
mod send_wecom;
mod sns;
mod tokens;
mod tokens_wecom;
