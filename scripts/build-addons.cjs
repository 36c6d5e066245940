// Links the three addon builds that `npm test` checks (the prebuildify prebuild,
// node-gyp and cmake-js) against the core that `npm run build:native` compiled
// once into out/native, so the core is not compiled again per build system.
// An install from source (npm ci, node-gyp-build) still compiles everything.
//   node scripts/build-addons.cjs
const { spawnSync } = require('child_process');
const { existsSync } = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const core = path.join(root, 'out', 'native', 'libternorm_core.a');
if (!existsSync(core)) {
  console.error(`build-addons: ${core} is missing; run npm run build:native first`);
  process.exit(1);
}

function run(cmd, args, env = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.status !== 0) {
    console.error(`build-addons: ${cmd} ${args.join(' ')} failed (${r.error ? r.error.message : `exit ${r.status}`})`);
    process.exit(1);
  }
}

const bin = (name) => path.join(root, 'node_modules', '.bin', name);
// node-gyp reads npm_config_<name> as a gyp variable; prebuildify runs node-gyp with this env.
run(bin('prebuildify'), ['--napi', '--strip', '--target', 'node@20.17.0'], { JOBS: '2', npm_config_ternorm_core_lib: core });
run('node-gyp', ['configure', `--ternorm_core_lib=${core}`]);
run('node-gyp', ['build', '-j', '2']);
run(bin('cmake-js'), ['compile', '--parallel', '2', '--out', 'out/cmake-js', `--CDTERNORM_CORE_LIB=${core}`]);
