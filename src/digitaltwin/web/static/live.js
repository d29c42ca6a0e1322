// Server-Sent Events over fetch (EventSource cannot send the Authorization header).
import { authorizedFetch } from "./app.js";

/**
 * Follow ``/api/v1/stream?asset_id=`` and call ``onEvent(name, data)`` per event.
 * Returns a function that stops the stream. Reconnects after 5 s when the stream ends.
 */
export function follow(assetId, onEvent) {
  const controller = new AbortController();
  let stopped = false;
  const run = async () => {
    while (!stopped) {
      try {
        const response = await authorizedFetch(`/api/v1/stream?asset_id=${encodeURIComponent(assetId)}`,
          { signal: controller.signal, headers: { Accept: "text/event-stream" } });
        if (!response.ok) throw new Error(`stream ${response.status}`);
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let name = "message";
            const data = [];
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) name = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
            }
            if (data.length) onEvent(name, JSON.parse(data.join("\n")));
          }
        }
      } catch (error) {
        if (stopped) return;
      }
      if (!stopped) await new Promise((resolve) => setTimeout(resolve, 5000));
    }
  };
  run();
  return () => { stopped = true; controller.abort(); };
}
