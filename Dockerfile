# The txflow binary in a small image. Not built in CI (no Docker engine where
# txflow is developed): treat it as a starting point and build it yourself:
#   docker build -t txflow .
FROM rust:1.95-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential pkg-config perl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p txflow-cli

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/txflow txflow
COPY --from=build /src/target/release/txflow /usr/local/bin/txflow
USER txflow
WORKDIR /var/lib/txflow
ENTRYPOINT ["txflow"]
CMD ["--help"]
