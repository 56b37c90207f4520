import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { defineConfig } from 'vite';

const pkg = JSON.parse(readFileSync(resolve(__dirname, 'package.json'), 'utf8'));

// Grafana provides these to plugins at run time (SystemJS); the bundle must not carry its own.
const externals = [
  'react',
  'react-dom',
  '@grafana/data',
  '@grafana/ui',
  '@grafana/runtime',
  '@grafana/schema',
  '@emotion/css',
  'rxjs',
  'lodash',
];

/** Copies plugin.json (with the version and date), the logo and the README into dist/. */
function pluginFiles() {
  return {
    name: 'meshlens-plugin-files',
    generateBundle(this: { emitFile: (f: { type: 'asset'; fileName: string; source: string | Uint8Array }) => void }) {
      const today = new Date().toISOString().slice(0, 10);
      const json = readFileSync(resolve(__dirname, 'src/plugin.json'), 'utf8').replace('%VERSION%', pkg.version).replace('%TODAY%', today);
      this.emitFile({ type: 'asset', fileName: 'plugin.json', source: json });
      this.emitFile({ type: 'asset', fileName: 'img/logo.svg', source: readFileSync(resolve(__dirname, 'src/img/logo.svg')) });
      this.emitFile({ type: 'asset', fileName: 'README.md', source: readFileSync(resolve(__dirname, 'README.md')) });
    },
  };
}

export default defineConfig({
  plugins: [pluginFiles()],
  // Classic JSX (React.createElement): the bundle imports only what Grafana provides.
  esbuild: { jsx: 'transform', jsxFactory: 'React.createElement', jsxFragment: 'React.Fragment' },
  build: {
    outDir: 'dist',
    // dist/ also holds the backend executables, built before or after.
    emptyOutDir: false,
    sourcemap: true,
    minify: true,
    rollupOptions: {
      input: resolve(__dirname, 'src/module.ts'),
      preserveEntrySignatures: 'strict',
      external: (id) => externals.includes(id) || id.startsWith('@grafana/'),
      // Grafana loads module.js with SystemJS, which takes AMD as its plugins have always been built.
      output: { format: 'amd', entryFileNames: 'module.js', inlineDynamicImports: true },
    },
  },
  test: {
    environment: 'jsdom',
    globals: true,
    setupFiles: ['src/test/setup.ts'],
    css: false,
    // @grafana/ui imports CSS from its dependencies: let Vite transform them.
    server: { deps: { inline: [/@grafana\//, /uplot/] } },
  },
});
