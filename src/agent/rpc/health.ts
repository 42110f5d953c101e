// grpc.health.v1.Health: SERVING for the whole server and for tote.agent.v1.AgentService, on the mTLS port and on the
// optional plaintext one for kubelet probes.
import { status as Status } from '@grpc/grpc-js';
import type { sendUnaryData, ServerUnaryCall, ServerWritableStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { HealthCheckResponse_ServingStatus } from '../../../generated/proto/grpc/health/v1/health.ts';
import type { HealthCheckRequest, HealthCheckResponse } from '../../../generated/proto/grpc/health/v1/health.ts';

export const healthHandlers: UntypedServiceImplementation = {
  check: (
    call: ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>,
    callback: sendUnaryData<HealthCheckResponse>,
  ) => {
    const known = call.request.service === '' || call.request.service === 'tote.agent.v1.AgentService';
    if (!known) return callback({ code: Status.NOT_FOUND, details: `unknown service ${call.request.service}` });
    callback(null, { status: HealthCheckResponse_ServingStatus.SERVING });
  },
  watch: (call: ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) => {
    call.write({ status: HealthCheckResponse_ServingStatus.SERVING });
    // Stays open until the client leaves; the status never changes while the server runs.
  },
};
