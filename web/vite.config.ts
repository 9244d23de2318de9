import preact from '@preact/preset-vite';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  plugins: [preact()],
  build: {
    target: 'es2022',
    sourcemap: false,
    // one small entry chunk; uPlot (charts) is split off and loaded by the pages that draw
    chunkSizeWarningLimit: 200,
    manifest: true,
  },
  server: { port: 5173, host: '127.0.0.1' },
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
  },
});
