/**
 * bandwidth: rate limits on the container's network interface through the CNI `bandwidth`
 * plugin (tc: a token bucket on the host side of the veth for traffic into the container,
 * one on an IFB device fed from the veth for traffic out of it). micro's own network runs
 * that plugin when a limit is asked; a CNI list must declare the `bandwidth` capability.
 * Only the spec is written here: the net plugin's ADD passes it as runtime config.
 */
import { defaultBurst, parseBurst, parseRate } from "../core/cni/rate.ts";
import type { PluginConf } from "../core/cni/config.ts";
import { MicroError } from "../core/errors.ts";
import type { Plugin } from "../core/plugin.ts";
import type { Schema } from "../core/schema_types.ts";

interface BandwidthOptions {
  egress?: string | number;
  ingress?: string | number;
  egressBurst?: string | number;
  ingressBurst?: string | number;
}

function value(doc: string, parseOne: (v: string | number) => number | string): Schema {
  const check = (v: string | number) => {
    const r = parseOne(v);
    return typeof r === "string" ? r : undefined;
  };
  return {
    type: "oneOf",
    doc,
    options: [
      { type: "string", check },
      { type: "integer", min: 0, check },
    ],
  };
}

/** The profile key and the flag of each option, for messages. */
export const OPTION_NAMES: Record<keyof BandwidthOptions, string> = {
  egress: "--egress-rate",
  ingress: "--ingress-rate",
  egressBurst: "--egress-burst",
  ingressBurst: "--ingress-burst",
};

function bits(v: string | number | undefined, parseOne: typeof parseRate): number {
  if (v === undefined) return 0;
  const r = parseOne(v);
  return typeof r === "number" ? r : 0;
}

export const bandwidth: Plugin<BandwidthOptions> = {
  name: "bandwidth",
  description: "network rate limits (tc, through the CNI bandwidth plugin): egress, ingress",
  schema: {
    type: "object",
    fields: {
      egress: value("rate out of the container: 10mbit, 512kbit, 1gbit (bare: bit/s)", parseRate),
      ingress: value("rate into the container, as egress", parseRate),
      egressBurst: value(
        "bucket of the egress limit: 32kb, 256kbit (default 100 ms of the rate, at least 32kb)",
        parseBurst,
      ),
      ingressBurst: value("bucket of the ingress limit, as egressBurst", parseBurst),
    },
  },
  configure(o, spec) {
    const egressRate = bits(o.egress, parseRate);
    const ingressRate = bits(o.ingress, parseRate);
    if (
      !egressRate && !ingressRate && o.egressBurst === undefined && o.ingressBurst === undefined
    ) {
      return;
    }
    spec.micro.bandwidth = {
      ingressRate,
      ingressBurst: ingressRate
        ? o.ingressBurst !== undefined
          ? bits(o.ingressBurst, parseBurst)
          : defaultBurst(ingressRate)
        : 0,
      egressRate,
      egressBurst: egressRate
        ? o.egressBurst !== undefined ? bits(o.egressBurst, parseBurst) : defaultBurst(egressRate)
        : 0,
    };
    // A burst without its rate is kept visible for the check.
    if (!ingressRate && o.ingressBurst !== undefined) spec.micro.bandwidth.ingressBurst = -1;
    if (!egressRate && o.egressBurst !== undefined) spec.micro.bandwidth.egressBurst = -1;
  },
  plan() {
    // The net plugin's cni-add carries the limits (runtimeConfig.bandwidth).
    return [];
  },
  check(spec, host) {
    const bw = spec.micro.bandwidth;
    if (!bw) return [];
    const asked = [
      bw.egressRate ? OPTION_NAMES.egress : "",
      bw.ingressRate ? OPTION_NAMES.ingress : "",
    ].filter((s) => s);
    const fail = (message: string, hint?: string) =>
      new MicroError(message, { phase: "check", plugin: "bandwidth", hint });
    const errors: MicroError[] = [];
    for (const dir of ["egress", "ingress"] as const) {
      if (bw[`${dir}Burst`] === -1) {
        errors.push(
          fail(
            `${OPTION_NAMES[`${dir}Burst`]} without ${OPTION_NAMES[dir]}: a burst needs its rate`,
          ),
        );
      }
    }
    if (!asked.length) return errors;
    const what = asked.join(" and ");
    const mode = spec.micro.network;
    if (mode !== "bridge" && mode !== "cni") {
      errors.push(
        fail(
          `${what} needs a CNI network (bridge or a CNI list), not --network ${mode}`,
          mode === "none" || mode === "host"
            ? "use --network bridge (or leave --network out), or drop the rate"
            : "drop the rate: this network has no host-side interface for tc",
        ),
      );
      return errors;
    }
    if (mode === "cni" && host.net?.config) {
      const list = JSON.parse(host.net.config) as { name: string; plugins: PluginConf[] };
      if (!list.plugins.some((p) => p.capabilities?.bandwidth === true)) {
        errors.push(
          fail(
            `${what}: network "${list.name}" has no plugin with the "bandwidth" capability`,
            'add {"type": "bandwidth", "capabilities": {"bandwidth": true}} to its plugins',
          ),
        );
      }
    }
    return errors;
  },
};
