'use strict';
/*
 * qcflow's FC layer as a Serverless Devs resource (a local component: s.yaml names it by path).
 *
 * Why: the functions need the ARN of the layer `make layer` built, version included. s resolves a
 * function's props before anything of the run is deployed and drops what a pre-deploy action
 * returns, so s.yaml used to read build/layer.id with ${file()} (which stops every `s` command in a
 * checkout without build/) and to assume version 1 of `qcflow-<id>` (wrong once that layer's
 * version 1 was deleted: FC never reuses a version number). As a resource, the layer is published
 * by `deploy` and read by `info`, which s runs before a resource whose props say
 * ${resources.layer.info.arn}: the ARN is the real latest version of this build's layer.
 *
 * - deploy: publishes build/layer.zip as `qcflow-<build/layer.id>` (fc3 skips the upload when the
 *   latest version has the same CRC64) and returns {name, version, arn}.
 * - info: {name, version, arn} of that layer's latest version; {} when build/ is missing or the
 *   layer was never published (s then leaves the reference unresolved, which info, remove and
 *   preview of the functions do not need, and scripts/check_deploy.py refuses for a deploy).
 * - remove: keeps the layer (a published function version may still use it); says how to remove it.
 *
 * FC is reached through fc3 itself (`s cli fc3 layer ... -o json --silent`, the same s and access),
 * so this file needs no SDK and no credentials of its own.
 */
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const PREFIX = 'qcflow';

class QcflowLayer {
  constructor(params = {}) {
    this.logger = params.logger || console;
  }

  build(inputs) {
    const props = inputs.props || {};
    const dir = path.resolve(inputs.cwd || process.cwd(), props.build || 'build');
    const idFile = path.join(dir, 'layer.id');
    const zip = path.join(dir, 'layer.zip');
    if (!fs.existsSync(idFile) || !fs.existsSync(zip)) return null;
    const id = fs.readFileSync(idFile, 'utf8').trim();
    return { dir, zip, name: `${PREFIX}-${id}` };
  }

  fc3(inputs, args, cwd) {
    const props = inputs.props || {};
    const access = (inputs.resource && inputs.resource.access) || 'default';
    const argv = [process.argv[1], 'cli', 'fc3', 'layer', ...args, '--region', props.region,
      '-a', access, '-o', 'json', '--silent'];
    const out = execFileSync(process.execPath, argv, { cwd, encoding: 'utf8', env: process.env,
      stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 16 * 1024 * 1024, timeout: 600000 });
    // fc3 may log the API's answer as one line before s prints the result (a pretty-printed document)
    const starts = [...out.matchAll(/^[[{]$/gm)];
    return JSON.parse(starts.length ? out.slice(starts[starts.length - 1].index) : out);
  }

  async describe(inputs, name, version) {
    const credential = inputs.getCredential ? await inputs.getCredential() : {};
    const account = credential.AccountID;
    const arn = `acs:fc:${inputs.props.region}:${account}:layers/${name}/versions/${version}`;
    return { name, version, arn };
  }

  async deploy(inputs) {
    const build = this.build(inputs);
    if (!build) throw new Error('build/layer.zip or build/layer.id is missing: run `make layer`, then deploy again');
    const runtime = (inputs.props || {}).compatibleRuntime || 'python3.10';
    const published = this.fc3(inputs, ['publish', '--layer-name', build.name, '--code', build.zip,
      '--compatible-runtime', runtime], build.dir);
    return this.describe(inputs, build.name, published.version);
  }

  async info(inputs) {
    const build = this.build(inputs);
    if (!build) return {};
    let versions;
    try {
      versions = this.fc3(inputs, ['versions', '--layer-name', build.name], build.dir);
    } catch (error) {
      return {}; // never published (FC: LayerNotFound)
    }
    const latest = Math.max(0, ...(versions || []).map((v) => Number(v.version) || 0));
    return latest ? this.describe(inputs, build.name, latest) : {};
  }

  async remove(inputs) {
    const build = this.build(inputs);
    const name = build ? build.name : `${PREFIX}-<id>`;
    this.logger.info(`layer kept (a function version may use it): s cli fc3 layer remove --layer-name ${name} -y`);
    return {};
  }
}

module.exports = QcflowLayer;
