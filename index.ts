import { VllmFleet, readStackConfig } from "./components";

const { settings, secrets } = readStackConfig();
const fleet = new VllmFleet("fleet", { settings, secrets });

export const endpoint = fleet.endpoint;
export const openaiBaseUrl = fleet.openaiBaseUrl;
export const servedModel = fleet.servedModel;
export const replicas = fleet.replicas;
export const balancerContainer = fleet.balancerContainer;
export const networkName = fleet.networkName;
export const configId = fleet.configId;
export const nginxConfig = fleet.nginxConfig;
