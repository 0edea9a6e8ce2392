import { VllmFleet, readPreviousDeployment, readStackConfig } from "./components";

export = async () => {
    const { settings, secrets } = readStackConfig();
    const previous = await readPreviousDeployment();
    const fleet = new VllmFleet("fleet", { settings, secrets, previous });
    return {
        endpoint: fleet.endpoint,
        openaiBaseUrl: fleet.openaiBaseUrl,
        servedModel: fleet.servedModel,
        models: fleet.models,
        replicas: fleet.replicas,
        balancerContainer: fleet.balancerContainer,
        networkName: fleet.networkName,
        configId: fleet.configId,
        nginxConfig: fleet.nginxConfig,
        rollout: fleet.rollout,
        prometheusUrl: fleet.prometheusUrl,
        grafanaUrl: fleet.grafanaUrl,
    };
};
