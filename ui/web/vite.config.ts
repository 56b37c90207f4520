import { defineConfig } from 'vite';

// The build goes to ui/dist, which the Go package embeds. public/.gitkeep is
// copied there so the committed placeholder survives emptyOutDir.
export default defineConfig({
  build: {
    outDir: '../dist',
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 1200,
  },
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  server: {
    proxy: { '/api': process.env.MESHLENS_URL ?? 'http://127.0.0.1:8080' },
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
