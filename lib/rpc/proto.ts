/** Loads the .proto files once; the only place that knows where they live. */
import * as grpc from "@grpc/grpc-js";
import * as loader from "@grpc/proto-loader";

// grpc-js logs some failures to stderr itself ("E No address added …"); every one of
// them also reaches us as an error that is reported in full, so its log stays quiet
// unless asked for (GRPC_VERBOSITY, as grpc-js documents it, or SLOTH_DEBUG).
if (!Deno.env.get("GRPC_VERBOSITY") && !Deno.env.get("SLOTH_DEBUG")) {
  grpc.setLogVerbosity(grpc.logVerbosity.NONE);
}

const protoRoot = decodeURIComponent(new URL("../../proto", import.meta.url).pathname);

const options: loader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [protoRoot],
};

// deno-lint-ignore no-explicit-any
type Package = any;

let loaded: Package | undefined;

export function protos(): {
  agent: grpc.ServiceClientConstructor;
  health: grpc.ServiceClientConstructor;
} {
  loaded ??= grpc.loadPackageDefinition(
    loader.loadSync(["sloth/v1/agent.proto", "grpc/health/v1/health.proto"], options),
  );
  return { agent: loaded.sloth.v1.AgentService, health: loaded.grpc.health.v1.Health };
}
