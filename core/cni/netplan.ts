/**
 * What plugins/net.ts needs to check and plan a network other than none, host and another
 * container's: loaded by its `load` only for one (a module a run loads costs it in
 * proportion to its size: core/v8.ts).
 */
export { resolvConf } from "./dns.ts";
export { hostOf, parseCidr } from "./subnet.ts";
export { PACKAGE, SLIRP_ADDRESS, SLIRP_DNS, SLIRP_SOCKET } from "../usernet/args.ts";
