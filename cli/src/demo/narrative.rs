//! Narrative: each user's place in the story, and the pieces a level
//! unlocks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use diana_bus::diana::{
    DianaInteraction, LevelUp, NarrativeProgression, PieceUnlocked, ServiceResponse,
};
use diana_bus::{Bus, ConfigError, Context, HandlerError, HandlerResult, Service};
use serde_json::json;

use super::per_user::{PerUser, Sequence};

/// Follows each user through the story (`NarrativeProgression`, fragments
/// named `chapter-1`, `chapter-2`, ...), unlocks a memory piece on each
/// `LevelUp` (`PieceUnlocked`), and answers interactions with the chapter
/// and the pieces.
#[derive(Debug, Default)]
pub struct Narrative {
    stories: PerUser<Story>,
    out_of_order: AtomicU64,
}

#[derive(Debug, Default, Clone)]
struct Story {
    chapter: String,
    chapters: Sequence,
    pieces: Vec<String>,
}

impl Narrative {
    /// Chapters that came out of order.
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order.load(Ordering::Relaxed)
    }

    /// Pieces unlocked, over every user.
    pub fn pieces(&self) -> usize {
        self.stories
            .snapshot()
            .iter()
            .map(|(_, story)| story.pieces.len())
            .sum()
    }
}

impl Service for Narrative {
    fn register(self: Arc<Self>, bus: &Bus) -> Result<(), ConfigError> {
        let this = self.clone();
        bus.subscriber::<NarrativeProgression>()
            .name("narrative")
            .subscribe(
                move |progress: &NarrativeProgression, ctx: &Context| -> HandlerResult {
                    let number = progress
                        .fragment_id()
                        .strip_prefix("chapter-")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    let user = progress.user_id().get();
                    let in_order = this.stories.with(ctx.tenant(), user, |story| {
                        story.chapter = progress.fragment_id().to_owned();
                        story.chapters.next(number)
                    });
                    if !in_order {
                        this.out_of_order.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                },
            );
        let this = self.clone();
        bus.subscriber::<LevelUp>()
            .name("narrative.pieces")
            .subscribe(move |up: &LevelUp, ctx: &Context| -> HandlerResult {
                let user = up.user_id().get();
                let piece = format!("memory-{}", up.new_level());
                this.stories.with(ctx.tenant(), user, |story| {
                    story.pieces.push(piece.clone());
                });
                let unlocked = PieceUnlocked::new(user, piece, "level_up")
                    .map_err(|e| HandlerError::permanent(e.to_string()))?;
                ctx.publish(unlocked);
                Ok(())
            });
        bus.responder::<DianaInteraction, ServiceResponse>()
            .name("narrative")
            .respond(move |interaction: &DianaInteraction, ctx: &Context| {
                let user = interaction.user_id().get();
                let story = self.stories.with(ctx.tenant(), user, |story| story.clone());
                super::reply(
                    interaction,
                    "narrative",
                    json!({"chapter": story.chapter, "pieces": story.pieces}),
                )
            });
        Ok(())
    }
}
