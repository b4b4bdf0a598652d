"""The chat app's own legacy connection manager, as the FastAPI docs teach it, after adoption.

Business code keeps calling `broadcast_to_thread(thread_id, frame)` and friends; their bodies now
delegate to wsmigrate's legacy hub, which delivers the old way or through the unified path as the
event type's stage says, and mirrors every broadcast onto the bus for unified clients. The old
`connect` / `disconnect` are gone: the legacy views are declared (examples/chat/declaration.py)
and wsmigrate serves those sockets.
"""

from __future__ import annotations

from wsmigrate import Frame, LegacyConnectionManager


class ConnectionManager:
    def __init__(self, hub: LegacyConnectionManager) -> None:
        self.hub = hub

    async def broadcast_to_thread(self, thread_id: int, message: Frame) -> None:
        await self.hub.broadcast("thread", thread_id, message)

    async def broadcast_to_agent(self, agent_id: int, message: Frame) -> None:
        await self.hub.broadcast("agent", agent_id, message)

    async def broadcast_global(self, message: Frame) -> None:
        await self.hub.broadcast_global(message)
