export { NginxBalancer, type NginxBalancerArgs } from "./balancer";
export { NginxImage, type NginxImageArgs } from "./image";
export { renderNginxConfig, type BalancerConfig, type RenderedConfig, type UpstreamServer, type UpstreamState } from "./render";
