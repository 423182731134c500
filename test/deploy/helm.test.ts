/**
 * The Helm chart rendered by helm itself (deploy/helm/ensure-helm.sh provides the binary; `npm test` builds it
 * on first use) and parsed as YAML: what an SRE checks by eye, asserted.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';

const ROOT = join(import.meta.dirname, '..', '..');
const CHART = join(ROOT, 'deploy', 'helm', 'patchbay');
const helm = execFileSync('bash', [join(ROOT, 'deploy', 'helm', 'ensure-helm.sh')], { encoding: 'utf8' }).trim();

interface Manifest {
  kind: string;
  metadata: { name: string };
  /** Rendered Kubernetes objects are deep, loosely typed trees; the assertions below check their shape. */
  spec?: any;
  data?: Record<string, string>;
}

function render(...args: string[]): Manifest[] {
  const out = execFileSync(helm, ['template', 'pb', CHART, ...args], { encoding: 'utf8' });
  return parseAllDocuments(out)
    .map((d) => d.toJS() as Manifest | null)
    .filter((m): m is Manifest => m !== null);
}

function one(manifests: Manifest[], kind: string): Manifest {
  const found = manifests.filter((m) => m.kind === kind);
  assert.equal(found.length, 1, `exactly one ${kind}`);
  return found[0]!;
}

function container(manifests: Manifest[]) {
  return one(manifests, 'Deployment').spec.template.spec.containers[0];
}

describe('helm chart', () => {
  it('passes helm lint --strict with default and GPU values', () => {
    execFileSync(helm, ['lint', '--strict', CHART], { encoding: 'utf8' });
    execFileSync(helm, ['lint', '--strict', CHART, '-f', join(CHART, 'values-gpu.yaml')], { encoding: 'utf8' });
  });

  it('renders probes on /readyz and /healthz against the named http port', () => {
    const c = container(render());
    assert.deepEqual(c.ports, [{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
    assert.equal(c.readinessProbe.httpGet.path, '/readyz');
    assert.equal(c.livenessProbe.httpGet.path, '/healthz');
    assert.equal(c.startupProbe.httpGet.path, '/healthz');
    for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) assert.equal(probe.httpGet.port, 'http');
    const services = render().filter((m) => m.kind === 'Service');
    const service = services.find((m) => m.metadata.name === 'pb-patchbay')!;
    assert.deepEqual(service.spec.ports[0], { name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' });
    const pods = services.find((m) => m.metadata.name === 'pb-patchbay-pods')!;
    assert.equal(pods.spec.clusterIP, 'None', 'a headless Service addresses each replica (admin pushes)');
  });

  it('passes settings through the ConfigMap and mounts the adapter and data volumes', () => {
    const manifests = render();
    const config = one(manifests, 'ConfigMap').data!;
    assert.equal(config['PATCHBAY_DEVICE'], 'cpu');
    assert.equal(config['PORT'], '8080');
    assert.equal(config['PATCHBAY_ADAPTER_DIR'], '/var/lib/patchbay/adapters');
    assert.equal(config['PATCHBAY_DATA_DIR'], '/var/lib/patchbay/data');
    assert.equal(config['OTEL_EXPORTER_OTLP_ENDPOINT'], undefined, 'tracing is off unless an endpoint is set');
    const c = container(manifests);
    assert.deepEqual(c.envFrom, [{ configMapRef: { name: 'pb-patchbay' } }]);
    const mounts = Object.fromEntries(c.volumeMounts.map((m: { name: string; mountPath: string }) => [m.name, m.mountPath]));
    assert.deepEqual(mounts, { data: '/var/lib/patchbay/data', tmp: '/tmp', adapters: '/var/lib/patchbay/adapters' });
    const volumes = one(manifests, 'Deployment').spec.template.spec.volumes;
    assert.equal(volumes.find((v: { name: string }) => v.name === 'adapters').persistentVolumeClaim.claimName, 'pb-patchbay-adapters');
    assert.equal(one(manifests, 'PersistentVolumeClaim').spec.accessModes[0], 'ReadWriteMany');
  });

  it('runs as non-root with a read-only root filesystem', () => {
    const manifests = render();
    const pod = one(manifests, 'Deployment').spec.template.spec;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(container(manifests).securityContext.readOnlyRootFilesystem, true);
    assert.equal(container(manifests).securityContext.allowPrivilegeEscalation, false);
  });

  it('takes the admin token from a Secret: its own, or an existing one, never a plain env value', () => {
    assert.equal(render().filter((m) => m.kind === 'Secret').length, 0, 'no token, no Secret');
    assert.equal(container(render()).env, undefined, 'no token: nothing in env');

    const own = render('--set', 'adminToken.value=s3cret');
    const secret = one(own, 'Secret');
    assert.equal(Buffer.from(secret.data!['admin-token']!, 'base64').toString(), 's3cret');
    assert.deepEqual(container(own).env, [
      { name: 'PATCHBAY_ADMIN_TOKEN', valueFrom: { secretKeyRef: { name: 'pb-patchbay-admin', key: 'admin-token' } } },
    ]);

    const existing = render('--set', 'adminToken.existingSecret=ops-token', '--set', 'adminToken.value=ignored');
    assert.equal(existing.filter((m) => m.kind === 'Secret').length, 0);
    assert.equal(container(existing).env[0].valueFrom.secretKeyRef.name, 'ops-token');
  });

  it('mounts a tenant keys file from an existing Secret', () => {
    const manifests = render('--set', 'keysFile.existingSecret=tenant-keys');
    const c = container(manifests);
    assert.deepEqual(c.env.find((e: { name: string }) => e.name === 'PATCHBAY_KEYS_FILE'), { name: 'PATCHBAY_KEYS_FILE', value: '/etc/patchbay/keys/keys.json' });
    assert.ok(c.volumeMounts.some((m: { name: string; readOnly?: boolean }) => m.name === 'keys' && m.readOnly));
  });

  it('asks for an NVIDIA GPU and the CUDA device with values-gpu.yaml, and not by default', () => {
    assert.equal(container(render()).resources.limits['nvidia.com/gpu'], undefined);
    const gpu = render('-f', join(CHART, 'values-gpu.yaml'));
    const c = container(gpu);
    assert.equal(c.resources.limits['nvidia.com/gpu'], 1);
    assert.equal(one(gpu, 'ConfigMap').data!['PATCHBAY_DEVICE'], 'cuda');
    assert.match(c.image, /cuda$/);
    assert.ok(one(gpu, 'Deployment').spec.template.spec.tolerations.some((t: { key: string }) => t.key === 'nvidia.com/gpu'));
  });

  it('renders the optional HPA, PodDisruptionBudget, ServiceMonitor and OTLP endpoint when asked', () => {
    const manifests = render(
      '--set', 'autoscaling.enabled=true', '--set', 'serviceMonitor.enabled=true', '--set', 'otel.endpoint=http://collector:4318',
    );
    const hpa = one(manifests, 'HorizontalPodAutoscaler');
    assert.equal(hpa.spec.scaleTargetRef.name, 'pb-patchbay');
    assert.equal(one(manifests, 'Deployment').spec.replicas, undefined, 'the HPA owns the replica count');
    assert.equal(one(manifests, 'PodDisruptionBudget').spec.minAvailable, 1);
    assert.equal(one(manifests, 'ServiceMonitor').spec.endpoints[0].path, '/metrics');
    assert.equal(one(manifests, 'ConfigMap').data!['OTEL_EXPORTER_OTLP_ENDPOINT'], 'http://collector:4318');
  });
});
