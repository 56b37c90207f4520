import { resolve } from 'node:path';
import { defineConfig } from 'vite';

// The screenshot page: the plugin's golden frames drawn with @grafana/ui in a browser (not Grafana).
export default defineConfig({
  root: __dirname,
  base: './',
  esbuild: { jsx: 'transform', jsxFactory: 'React.createElement', jsxFragment: 'React.Fragment' },
  build: { outDir: resolve(__dirname, '../.screenshot'), emptyOutDir: true, chunkSizeWarningLimit: 20000 },
});
