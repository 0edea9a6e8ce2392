export { FleetRelay, type FleetRelayArgs, type RelayHost } from "./relay";
export { relayRoutes, renderEgressConfig, renderGateConfig, relayServerName, type RelayRoute } from "./render";
