# syntax=docker/dockerfile:1
# tote: one image for `tote controller` and `tote agent` (the first argument picks the command).
#   docker build -t tote .       buildah bud -t tote .       podman build -t tote .
# Offline, without base images: make image-offline (hack/image/build-offline.sh).

# ── build: bundle tote and its dependencies into dist/tote.mjs (hack/build.ts) ────────────────────────────────────────
FROM docker.io/library/node:24-bookworm-slim AS build
WORKDIR /src
# Dependencies first, so source edits reuse this layer.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY hack/build.ts hack/build.ts
COPY src/ src/
COPY generated/ generated/
RUN npm run build && test -f dist/tote.mjs

# ── runtime: distroless Node.js 24, no shell, no package manager, uid 65532 ────────────────────────────────────────
FROM gcr.io/distroless/nodejs24-debian12:nonroot
WORKDIR /app
LABEL org.opencontainers.image.title="tote" \
      org.opencontainers.image.description="Salvages container images lost from their registry by moving the surviving copy node to node." \
      org.opencontainers.image.source="https://github.com/tote-dev/tote" \
      org.opencontainers.image.licenses="Apache-2.0"
# One ES module with every dependency inside (plus its source map and the bundled code's licences): no node_modules.
COPY --from=build --chown=0:0 /src/dist ./dist
ENV NODE_ENV=production
# Non-root by default (the controller); the agent's manifest sets uid 0 for containerd's socket.
USER 65532:65532
EXPOSE 8080 8081 9443
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/tote.mjs"]
CMD ["--help"]
